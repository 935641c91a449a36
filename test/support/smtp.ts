/**
 * A real SMTP server on 127.0.0.1 (the `smtp-server` package) that keeps every message it
 * accepts, raw source included. `stop()` and `start()` again on the same port simulate an
 * outage; `hold` makes it take a message's DATA and never answer (a server that hangs mid
 * hand-over: the sender never hears that its message was accepted, and it is not counted).
 */
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'
import type { Test } from 'tap'

export interface ReceivedMail {
  /** RCPT TO addresses. */
  to: string[]
  /** The message as sent (headers and body, CRLF line ends). */
  raw: string
  /** The first header of that name, unfolded (lower-case `name`). */
  header: (name: string) => string | undefined
  /** The text part, decoded from quoted-printable. */
  text: string
}

export interface SmtpSink {
  readonly port: number
  readonly url: string
  readonly messages: ReceivedMail[]
  /** Messages whose DATA arrived while holding (never answered). */
  readonly held: number
  /** While true, DATA is read and never answered. */
  hold: boolean
  /** Listens again on the same port (after stop). */
  start: () => Promise<void>
  /** Stops listening and drops every connection: the server is down. */
  stop: () => Promise<void>
  /** Resolves once `n` messages have been accepted. */
  waitFor: (n: number) => Promise<ReceivedMail[]>
}

function decodeQuotedPrintable (s: string): string {
  const bytes = s.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  return Buffer.from(bytes, 'latin1').toString('utf8')
}

function parse (raw: string, to: string[]): ReceivedMail {
  const [head = '', ...rest] = raw.split(/\r?\n\r?\n/)
  const headers = head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)
  const header = (name: string): string | undefined => {
    const line = headers.find((h) => h.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    return line?.slice(line.indexOf(':') + 1).trim()
  }
  // The text/plain part of a multipart/alternative message (or the whole body).
  const body = rest.join('\n\n')
  const part = /Content-Type: text\/plain[^]*?\r?\n\r?\n([^]*?)\r?\n--/i.exec(body)?.[1] ?? body
  return { to, raw, header, text: decodeQuotedPrintable(part) }
}

export interface SmtpSinkOptions {
  /**
   * Messages this returns true for are accepted (250) but not kept: a test of one flow leaves
   * out the mail another flow sends alongside (the verification mail of a registration).
   */
  ignore?: (mail: ReceivedMail) => boolean
}

export async function startSmtpSink (t: Test, options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const messages: ReceivedMail[] = []
  const waiters: Array<{ n: number, resolve: (m: ReceivedMail[]) => void }> = []
  let held = 0
  let server: SMTPServer | null = null
  let port = 0

  const create = (): SMTPServer => new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    closeTimeout: 50,
    onData (stream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        if (sink.hold) { held++; return }
        const mail = parse(Buffer.concat(chunks).toString('utf8'), session.envelope.rcptTo.map((r) => r.address))
        if (options.ignore?.(mail) === true) { callback(); return }
        messages.push(mail)
        for (const w of waiters.filter((w) => messages.length >= w.n)) { waiters.splice(waiters.indexOf(w), 1); w.resolve([...messages]) }
        callback()
      })
    }
  })

  const sink: SmtpSink = {
    get port () { return port },
    get url () { return `smtp://127.0.0.1:${port}` },
    messages,
    get held () { return held },
    hold: false,
    async start () {
      server = create()
      const listening = server.listen(port, '127.0.0.1')
      await once(listening, 'listening')
      port = (listening.address() as AddressInfo).port
    },
    async stop () {
      const s = server
      server = null
      if (s === null) return
      for (const connection of s.connections) connection.close()
      await new Promise<void>((resolve) => { s.close(() => { resolve() }) })
    },
    async waitFor (n) {
      if (messages.length >= n) return [...messages]
      return await new Promise((resolve) => waiters.push({ n, resolve }))
    }
  }
  await sink.start()
  t.teardown(() => sink.stop())
  return sink
}

/** The verification mail a registration with an address sends (its link leads to /account/verify-email). */
export function isVerificationMail (mail: ReceivedMail): boolean {
  return /\/account\/verify-email\?token=/.test(mail.text)
}

/** A port on 127.0.0.1 where nothing listens (taken, then released). */
export async function closedPort (): Promise<number> {
  const { createServer } = await import('node:net')
  const s = createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as AddressInfo
  await new Promise<void>((resolve) => s.close(() => { resolve() }))
  return port
}
