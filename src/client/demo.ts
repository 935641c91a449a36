/**
 * The demo app served at /demo: sign in (password with a second factor when the account has one,
 * a passkey button, or passkey autofill in the username field), see /me, set up TOTP, call a
 * protected endpoint, list and end sessions, add, rename and delete passkeys, log out.
 * Accounts by e-mail: register with an address, sign in by address, "Forgot password?", the
 * address with its verified state and a button that mails a new verification link, change the
 * address, delete the account. Mailed links lead to the service's own account pages
 * (/account/reset-password, ...; no APP_URL), which spend the token when their button is pressed;
 * the person then comes back here and signs in. Everything it knows about tokens goes through
 * the client library.
 */
import { AuthError, createAuthClient, type AuthChange } from './auth-client.js'

interface Me { id: string, username: string, roles: string[], createdAt: string, email?: string | null, emailVerified?: boolean }
interface Session { id: string, createdAt: string, lastUsedAt: string, userAgent: string | null, ip: string | null, current: boolean }

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`#${id} is missing`)
  return el as T
}

const { apiOrigin } = await (await fetch('config.json')).json() as { apiOrigin: string }
const auth = createAuthClient({ baseUrl: apiOrigin || location.origin })
$('api-origin').textContent = apiOrigin || location.origin

const time = (iso: string | number): string => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
const dateTime = (iso: string): string => new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })

function log (text: string): void {
  const item = document.createElement('li')
  const stamp = document.createElement('time')
  stamp.textContent = time(Date.now())
  item.append(stamp, text)
  $('log').prepend(item)
}

function notice (text: string | null): void {
  $('notice').textContent = text ?? ''
  $('notice').hidden = text === null
}

function show (view: 'loading' | 'login' | 'forgot' | 'mfa' | 'app'): void {
  $('loading').hidden = view !== 'loading'
  $('login-view').hidden = view !== 'login'
  $('forgot-view').hidden = view !== 'forgot'
  $('mfa-view').hidden = view !== 'mfa'
  $('app-view').hidden = view !== 'app'
  $('who').hidden = view !== 'app'
}

function messageOf (err: unknown): string {
  if (err instanceof AuthError) return `${err.message} (${err.code})`
  return 'The service cannot be reached'
}

async function getJson<T> (path: string): Promise<T> {
  const res = await auth.fetch(path)
  if (!res.ok) throw new AuthError(res.status, `HTTP_${res.status}`, `${path} answered ${res.status}`)
  return await res.json() as T
}

async function loadMe (): Promise<void> {
  const me = await getJson<Me>('/api/auth/me')
  $('who-name').textContent = me.username
  $('me-username').textContent = me.username
  $('me-id').textContent = me.id
  $('me-roles').textContent = me.roles.join(', ')
  $('me-created').textContent = dateTime(me.createdAt)
  const email = me.email ?? null
  $('me-email').textContent = email ?? 'none'
  $('me-email-status').textContent = email === null ? '' : me.emailVerified === true ? 'verified' : 'unverified'
  $('me-email-status').hidden = email === null
  $('email-verify-send').hidden = email === null || me.emailVerified === true
}

/** Runs a signed-in account action and shows its outcome in `resultId`. */
async function accountAction (resultId: string, action: () => Promise<void>, done: string): Promise<boolean> {
  const result = $(resultId)
  try {
    await action()
    result.textContent = done
    result.className = 'result ok'
    log(done)
    return true
  } catch (err) {
    result.textContent = messageOf(err)
    result.className = 'result fail'
    return false
  }
}

$('email-verify-send').addEventListener('click', () => {
  void accountAction('email-verify-result', async () => { await auth.requestEmailVerification() }, 'A verification mail is on its way; open its link, then reload this page')
})

$('email-change-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const password = $<HTMLInputElement>('email-change-password')
  void accountAction('email-change-result', async () => {
    await auth.changeEmail($<HTMLInputElement>('email-new').value, password.value)
  }, 'A confirmation link is on its way to the new address').finally(() => { password.value = '' })
})

$('delete-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const password = $<HTMLInputElement>('delete-password')
  // The client signs out once the account is gone: onChange shows the sign-in form.
  void accountAction('delete-result', async () => { await auth.deleteAccount(password.value) }, 'Account deleted')
    .finally(() => { password.value = '' })
})

async function loadSessions (): Promise<void> {
  const sessions = await getJson<Session[]>('/api/auth/sessions')
  const rows = sessions.map((s) => {
    const row = document.createElement('tr')
    row.dataset.sessionId = s.id
    const cells = [dateTime(s.createdAt), dateTime(s.lastUsedAt), s.userAgent ?? '–', s.ip ?? '–'].map((text, i) => {
      const td = document.createElement('td')
      td.textContent = text
      if (i === 2) { td.className = 'client'; td.title = text }
      return td
    })
    const actions = document.createElement('td')
    if (s.current) {
      const badge = document.createElement('span')
      badge.className = 'badge'
      badge.textContent = 'this browser'
      actions.append(badge)
    }
    const revoke = document.createElement('button')
    revoke.type = 'button'
    revoke.className = 'danger small revoke'
    revoke.textContent = 'Revoke'
    revoke.addEventListener('click', () => { void revokeSession(s.id, s.current) })
    actions.append(revoke)
    row.append(...cells, actions)
    return row
  })
  $('sessions').replaceChildren(...rows)
}

async function revokeSession (id: string, current: boolean): Promise<void> {
  const res = await auth.fetch(`/api/auth/sessions/${encodeURIComponent(id)}`, { method: 'DELETE' })
  log(`Revoked a session: ${res.status}`)
  if (current) await auth.logout().catch(() => undefined)
  else await loadSessions()
}

async function loadPasskeys (): Promise<void> {
  const passkeys = await auth.listPasskeys()
  const rows = passkeys.map((p) => {
    const row = document.createElement('tr')
    row.dataset.passkeyId = p.id
    const cells = [p.name, dateTime(p.createdAt), p.lastUsedAt === null ? '–' : dateTime(p.lastUsedAt)].map((text, i) => {
      const td = document.createElement('td')
      td.textContent = text
      if (i === 0) td.className = 'passkey-name'
      return td
    })
    const actions = document.createElement('td')
    const rename = document.createElement('button')
    rename.type = 'button'
    rename.className = 'secondary small rename'
    rename.textContent = 'Rename'
    rename.title = 'Rename to the name typed above'
    rename.addEventListener('click', () => { void passkeyAction(async () => { await auth.renamePasskey(p.id, $<HTMLInputElement>('passkey-name').value) }, 'Passkey renamed') })
    const remove = document.createElement('button')
    remove.type = 'button'
    remove.className = 'danger small delete'
    remove.textContent = 'Delete'
    remove.addEventListener('click', () => { void passkeyAction(async () => { await auth.deletePasskey(p.id) }, 'Passkey deleted') })
    actions.append(rename, remove)
    row.append(...cells, actions)
    return row
  })
  $('passkeys').replaceChildren(...rows)
}

async function passkeyAction (action: () => Promise<void>, done: string): Promise<void> {
  const result = $('passkey-result')
  try {
    await action()
    result.textContent = done
    result.className = 'result ok'
    log(done)
    await loadPasskeys()
  } catch (err) {
    result.textContent = err instanceof AuthError ? messageOf(err) : `The browser refused: ${err instanceof Error ? err.message : String(err)}`
    result.className = 'result fail'
  }
}

$('passkey-add').addEventListener('click', () => {
  void passkeyAction(async () => { await auth.registerPasskey($<HTMLInputElement>('passkey-name').value) }, 'Passkey added')
})

async function enterApp (): Promise<void> {
  notice(null)
  show('app')
  // A passkey autofill request still pending from the sign-in form has nothing left to do.
  auth.cancelPasskeyRequest()
  try {
    await Promise.all([loadMe(), loadSessions(), loadPasskeys()])
  } catch (err) {
    log(messageOf(err))
  }
}

function enterLogin (message: string | null): void {
  notice(message)
  show('login')
  $<HTMLInputElement>('password').value = ''
  startPasskeyAutofill()
}

function loginError (err: unknown): void {
  $('login-error').textContent = err instanceof AuthError ? messageOf(err) : `No passkey was used: ${err instanceof Error ? err.message : String(err)}`
  $('login-error').hidden = false
}

/** Offers saved passkeys in the username field's autofill while the sign-in form is shown. */
function startPasskeyAutofill (): void {
  auth.passkeyAutofill().then((signedIn) => {
    if (signedIn) log('Signed in with a passkey (autofill)')
  }, loginError)
}

// The button's request aborts the pending autofill request (the client library starts both
// through @simplewebauthn/browser, which keeps one ceremony at a time); the autofill is
// offered again when the button's attempt fails.
$('passkey-login-button').addEventListener('click', () => {
  $('login-error').hidden = true
  auth.signInWithPasskey().then(() => { log('Signed in with a passkey') }, (err: unknown) => {
    loginError(err)
    if (!auth.authenticated) startPasskeyAutofill()
  })
})

/** True while a sign-in waits for the enrolment the service requires (until its recovery codes are saved). */
let enrollingAtLogin = false

auth.onChange((change: AuthChange) => {
  if (change.authenticated) {
    if (change.reason === 'refresh') log('Access token refreshed')
    if (change.reason === 'other-tab') log('Fresh access token from another tab')
    // An enrolment that finished a sign-in shows its recovery codes first (recovery-done goes on).
    if ($('app-view').hidden && !enrollingAtLogin) void enterApp()
  } else {
    log(change.reason === 'logout' ? 'Logged out' : 'Session ended')
    enterLogin(change.reason === 'logout' ? null : 'Your session has ended. Please sign in again.')
  }
})

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault()
  void submit('login')
})
$('register-button').addEventListener('click', () => { void submit('register') })

// "Forgot password?": the answer is the same whether or not the address has an account, so the
// page says the same whatever it is; only a refused request (429, mail off) shows its error.
$('forgot-button').addEventListener('click', () => {
  auth.cancelPasskeyRequest()
  notice(null)
  $('forgot-result').hidden = true
  const typed = $<HTMLInputElement>('username').value
  $<HTMLInputElement>('forgot-email').value = typed.includes('@') ? typed : ''
  show('forgot')
  $<HTMLInputElement>('forgot-email').focus()
})
$('forgot-back').addEventListener('click', () => { enterLogin(null) })
$('forgot-form').addEventListener('submit', (event) => {
  event.preventDefault()
  void (async () => {
    const result = $('forgot-result')
    const send = $<HTMLButtonElement>('forgot-send')
    send.disabled = true
    try {
      await auth.forgotPassword({ email: $<HTMLInputElement>('forgot-email').value })
      result.textContent = 'If an account has this address, a mail with a link to choose a new password is on its way. The link works for a short time.'
      result.className = 'result ok'
      log('Asked for a password-reset link')
    } catch (err) {
      result.textContent = messageOf(err)
      result.className = 'result fail'
    } finally {
      result.hidden = false
      send.disabled = false
    }
  })()
})

/** A login names the account by address when what was typed looks like one (a username may hold `@` too, but not this shape). */
const ADDRESS = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

async function submit (action: 'login' | 'register'): Promise<void> {
  const form = $<HTMLFormElement>('login-form')
  if (!form.reportValidity()) return
  const username = $<HTMLInputElement>('username').value
  const password = $<HTMLInputElement>('password').value
  const email = $<HTMLInputElement>('email').value
  $('login-error').hidden = true
  for (const b of form.querySelectorAll('button')) b.disabled = true
  try {
    if (action === 'register') await auth.register(username, password, { email })
    const result = await auth.login(action === 'login' && ADDRESS.test(username) ? { email: username } : username, password)
    if (result.status === 'mfa-required') {
      log('Password accepted; a second factor is due')
      enterMfa(result.methods)
    } else if (result.status === 'mfa-enrollment-required') {
      log('Password accepted; this account must set up a second factor first')
      show('mfa')
      $('mfa-form').hidden = true
      enrollingAtLogin = true
      void startEnrolment($('mfa-view'))
    } else {
      log(action === 'register' ? (email === '' ? 'Account created, signed in' : 'Account created, signed in; a verification mail is on its way') : 'Signed in')
    }
  } catch (err) {
    $('login-error').textContent = messageOf(err)
    $('login-error').hidden = false
  } finally {
    for (const b of form.querySelectorAll('button')) b.disabled = false
  }
}

// The second step of a login: a code from the app, or a recovery code.
let useRecovery = false
function enterMfa (methods: string[]): void {
  useRecovery = false
  $('mfa-use-passkey').hidden = !methods.includes('webauthn')
  $('mfa-use-recovery').hidden = !methods.includes('recovery')
  $('mfa-form').hidden = false
  $('mfa-code-label').hidden = false
  $('mfa-recovery-label').hidden = true
  $('mfa-error').hidden = true
  show('mfa')
  $<HTMLInputElement>('mfa-code').focus()
}
$('mfa-use-recovery').addEventListener('click', () => {
  useRecovery = !useRecovery
  $('mfa-code-label').hidden = useRecovery
  $('mfa-recovery-label').hidden = !useRecovery
  $('mfa-use-recovery').textContent = useRecovery ? 'Use the app\'s code' : 'Use a recovery code'
})
$('mfa-use-passkey').addEventListener('click', () => {
  $('mfa-error').hidden = true
  auth.verifyMfaWithPasskey().then(() => { log('Signed in with a password and a passkey') }, (err: unknown) => {
    if (err instanceof AuthError && err.code === 'MFA_TOKEN_INVALID') { enterLogin('The sign-in took too long. Please sign in again.'); return }
    $('mfa-error').textContent = err instanceof AuthError ? messageOf(err) : `No passkey was used: ${err instanceof Error ? err.message : String(err)}`
    $('mfa-error').hidden = false
  })
})
$('mfa-form').addEventListener('submit', (event) => {
  event.preventDefault()
  void (async () => {
    $('mfa-error').hidden = true
    try {
      if (useRecovery) await auth.verifyMfa({ recoveryCode: $<HTMLInputElement>('mfa-recovery').value })
      else await auth.verifyMfa({ code: $<HTMLInputElement>('mfa-code').value.replace(/\s+/g, '') })
      log(useRecovery ? 'Signed in with a recovery code' : 'Signed in with a code')
    } catch (err) {
      if (err instanceof AuthError && err.code === 'MFA_TOKEN_INVALID') { enterLogin('The sign-in took too long. Please sign in again.'); return }
      $('mfa-error').textContent = messageOf(err)
      $('mfa-error').hidden = false
    } finally {
      $<HTMLInputElement>('mfa-code').value = ''
      $<HTMLInputElement>('mfa-recovery').value = ''
    }
  })()
})

// TOTP enrolment: the QR code, then a code to confirm, then the recovery codes shown once.
// `host` is the card the setup is shown in (the app view, or the sign-in step when the
// service requires a second factor before it starts a session).
async function startEnrolment (host: HTMLElement): Promise<void> {
  try {
    const enrolment = await auth.enrollTotp()
    host.append($('totp-setup'), $('recovery'))
    $<HTMLImageElement>('totp-qr').src = enrolment.qrCode
    $('totp-secret').textContent = enrolment.secret
    $('totp-setup').hidden = false
    $('totp-enroll').hidden = true
    $<HTMLInputElement>('totp-code').focus()
  } catch (err) {
    log(messageOf(err))
  }
}
$('totp-enroll').addEventListener('click', () => { void startEnrolment($('totp-card')) })
$('totp-confirm-form').addEventListener('submit', (event) => {
  event.preventDefault()
  void (async () => {
    $('totp-error').hidden = true
    const signedIn = auth.authenticated
    try {
      const codes = await auth.confirmTotp($<HTMLInputElement>('totp-code').value.replace(/\s+/g, ''))
      $('totp-setup').hidden = true
      const items = codes.map((c) => { const li = document.createElement('li'); li.textContent = c; return li })
      $('recovery-codes').replaceChildren(...items)
      $('recovery').hidden = false
      $('totp-status').textContent = 'An authenticator app is set up: sign-ins ask for its code.'
      log(signedIn ? 'Two-factor authentication turned on' : 'Two-factor authentication turned on; signed in')
    } catch (err) {
      $('totp-error').textContent = messageOf(err)
      $('totp-error').hidden = false
    }
  })()
})
$('recovery-done').addEventListener('click', () => {
  $('recovery').hidden = true
  $('recovery-codes').replaceChildren()
  $('totp-card').append($('totp-setup'), $('recovery'))
  enrollingAtLogin = false
  if ($('app-view').hidden && auth.authenticated) void enterApp()
})

$('call-button').addEventListener('click', () => { void callProtected() })

async function callProtected (): Promise<void> {
  const result = $('call-result')
  const before = auth.accessToken
  try {
    const res = await auth.fetch('/api/auth/me')
    const refreshed = auth.accessToken !== null && auth.accessToken !== before
    result.textContent = `${res.status} ${res.ok ? 'OK' : 'refused'} · GET /api/auth/me at ${time(Date.now())}${refreshed ? ' · token refreshed first' : ''}`
    result.className = `result ${res.ok ? 'ok' : 'fail'}`
  } catch (err) {
    result.textContent = messageOf(err)
    result.className = 'result fail'
  }
}

$('sessions-reload').addEventListener('click', () => { void loadSessions().catch((err: unknown) => { log(messageOf(err)) }) })
$('logout-button').addEventListener('click', () => { void auth.logout().catch(() => undefined) })

function renderExpiry (): void {
  const left = Math.max(0, Math.round((auth.expiresAt - Date.now()) / 1000))
  $('token-expiry').textContent = auth.authenticated ? (left >= 120 ? `${Math.round(left / 60)} min` : `${left} s`) : '–'
}
auth.onChange(renderExpiry)
setInterval(renderExpiry, 500)

try {
  if (await auth.restore()) {
    log('Session restored from the refresh cookie')
  } else {
    enterLogin(null)
  }
} catch (err) {
  enterLogin(messageOf(err))
}
