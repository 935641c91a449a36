/**
 * A small client for browser single-page apps: no framework, no dependencies.
 *
 * - The access token lives in memory only (never localStorage: any script injected into the
 *   page could read it there). The refresh token lives in the service's httpOnly cookie, which
 *   no script can read; the browser sends it to /api/auth only.
 * - `fetch` attaches the access token to requests for the service (and for `tokenOrigins`),
 *   refreshes first when the token is about to expire, and on a 401 refreshes once and retries
 *   once.
 * - One refresh at a time: concurrent calls in a tab share one in-flight refresh, and tabs take
 *   turns through the Web Locks API. A tab that refreshed hands the new access token to the
 *   other tabs over a BroadcastChannel, so a tab that waited for the lock usually finds a fresh
 *   token and does not refresh at all. (Should two refreshes still cross, the service answers a
 *   token re-presented within REFRESH_REUSE_INTERVAL with the same new token: nobody is logged out.)
 * - `restore()` refreshes on page load: a reload, or a new tab, is back in the session. It asks
 *   only when this browser has signed in here and not out since (a flag in localStorage, no
 *   token): a first visit sends no refresh, whose 401 every browser would log in its console.
 * - Logout in one tab tells the others; they drop their token, try the cookie once (it may
 *   hold a newer login) and otherwise report that the session has ended.
 *
 * Usage:
 *   const auth = createAuthClient({ baseUrl: 'https://auth.example.com' })
 *   auth.onChange(({ authenticated }) => render(authenticated))
 *   await auth.restore()
 *   const result = await auth.login('alice', 'correct horse battery staple')
 *   if (result.status === 'mfa-required') await auth.verifyMfa({ code: '123456' })
 *   const me = await (await auth.fetch('/api/auth/me')).json()
 *   await auth.logout()
 *
 * Accounts by e-mail: `register(username, password, { email })`, `login({ email }, password)`,
 * `requestEmailVerification()` / `verifyEmail(token)`, `changeEmail(newEmail, password)` /
 * `confirmEmail(token)`, `forgotPassword({ email } | { username })` / `resetPassword(token,
 * newPassword)`, `deleteAccount(password)`. The tokens come from mailed links, which lead to a
 * page (the app's at the service's APP_URL, or the service's own /account/... pages); the page
 * hands the token to these calls when the person presses its button, never on load.
 *
 * Passkeys (through @simplewebauthn/browser): `registerPasskey(name)` when signed in;
 * `signInWithPasskey()` for an explicit "Sign in with a passkey" button; `passkeyAutofill()`
 * on the sign-in page, which offers the saved passkeys in the username field's autofill (an
 * input with `autocomplete="username webauthn"`, WebAuthn conditional mediation). A page has
 * one pending navigator.credentials.get() at most: every ceremony starts through
 * @simplewebauthn/browser, whose WebAuthnAbortService aborts the pending one first, so the
 * button's request cancels the autofill's (which then resolves to false) instead of racing it.
 */
import {
  browserSupportsWebAuthnAutofill, startAuthentication, startRegistration, WebAuthnAbortService,
  type PublicKeyCredentialCreationOptionsJSON, type PublicKeyCredentialRequestOptionsJSON
} from '@simplewebauthn/browser'


export interface AuthClientOptions {
  /** Origin of the auth service, e.g. `https://auth.example.com`. Default: the page's origin. */
  baseUrl?: string
  /** Other origins (your APIs) that may receive the access token from `fetch`. Default: none. */
  tokenOrigins?: string[]
  /**
   * Refresh this many seconds before the access token expires, at most a fifth of its lifetime.
   * Default 30. A negative value turns refreshing ahead off (then only a 401 refreshes).
   */
  refreshLeewaySeconds?: number
}

export interface AuthChange {
  authenticated: boolean
  /** What happened: a login or refresh here, a token from another tab, a logout, or a session that ended. */
  reason: 'login' | 'refresh' | 'other-tab' | 'logout' | 'session-ended'
}

/** A refused auth request: the service's `{ statusCode, code, message }`. */
export class AuthError extends Error {
  override name = 'AuthError'
  constructor (readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

interface TokenResponse { accessToken: string, tokenType: 'Bearer', expiresIn: number }

/**
 * What a login came to: signed in, or a second factor is due (`verifyMfa`), or the account must
 * enrol one first (`enrollTotp`, then `confirmTotp`, which finishes the login).
 */
export type LoginResult =
  | { status: 'signed-in' }
  | { status: 'mfa-required', methods: Array<'totp' | 'recovery' | 'webauthn'> }
  | { status: 'mfa-enrollment-required' }

/** How a login or a password reset names the account: by username or by e-mail address. */
export type AccountName = { username: string } | { email: string }

/** One second factor: a TOTP code, a recovery code, or a WebAuthn assertion response. */
export type SecondFactor = { code: string } | { recoveryCode: string } | { webauthn: unknown }

export interface TotpEnrolment { secret: string, otpauthUri: string, qrCode: string }

type TabMessage =
  | { type: 'token', accessToken: string, expiresAt: number, lifetimeMs: number }
  | { type: 'logout' }

/** Sent on every cookie-mode request; required by the service when its cookie is SameSite=None. */
const CUSTOM_HEADER = { 'X-Auth-Request': '1' }

/** A passkey of the signed-in user, as GET /api/auth/passkeys lists it. */
export interface PasskeyInfo { id: string, name: string, createdAt: string, lastUsedAt: string | null, transports: string[] }

const isAbort = (err: unknown): boolean => err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ERROR_CEREMONY_ABORTED')

export function createAuthClient (options: AuthClientOptions = {}) {
  const base = new URL(options.baseUrl ?? globalThis.location.origin)
  const tokenOrigins = new Set([base.origin, ...(options.tokenOrigins ?? []).map((o) => new URL(o).origin)])
  const leewayMs = (options.refreshLeewaySeconds ?? 30) * 1000
  const name = `auth-client:${base.origin}`
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(name) : null
  const listeners = new Set<(change: AuthChange) => void>()

  // Expiry is kept on this browser's clock (receipt time + expiresIn), so a server clock that
  // is off does not matter.
  let token: string | null = null
  let expiresAt = 0
  let lifetimeMs = 0
  let inflight: Promise<boolean> | null = null
  // The login's MFA challenge token, between a 202 and its second step; memory only.
  let pendingMfa: { token: string, purpose: 'login' | 'enroll', webauthnOptions?: PublicKeyCredentialRequestOptionsJSON } | null = null

  // "Signed in here and not signed out": a flag, never a token. Where storage is unavailable
  // (blocked, or outside a browser) restore() asks the service, as if the flag were set.
  const hintKey = `${name}:session`
  function hasSessionHint (): boolean {
    try {
      return globalThis.localStorage === undefined || globalThis.localStorage.getItem(hintKey) !== null
    } catch {
      return true
    }
  }
  function setSessionHint (on: boolean): void {
    try {
      if (on) globalThis.localStorage?.setItem(hintKey, '1')
      else globalThis.localStorage?.removeItem(hintKey)
    } catch {}
  }

  const url = (path: string): string => new URL(path, base).href
  const expiringSoon = (): boolean => Date.now() >= expiresAt - Math.min(leewayMs, lifetimeMs / 5)

  function emit (change: AuthChange): void {
    for (const listener of listeners) listener(change)
  }

  function accept (body: TokenResponse, reason: AuthChange['reason']): void {
    token = body.accessToken
    lifetimeMs = body.expiresIn * 1000
    expiresAt = Date.now() + lifetimeMs
    setSessionHint(true)
    if (reason !== 'other-tab') channel?.postMessage({ type: 'token', accessToken: token, expiresAt, lifetimeMs } satisfies TabMessage)
    emit({ authenticated: true, reason })
  }

  function forget (reason: AuthChange['reason']): void {
    const was = token !== null
    token = null
    expiresAt = 0
    setSessionHint(false)
    if (was || reason === 'logout') emit({ authenticated: false, reason })
  }

  async function errorOf (res: Response): Promise<AuthError> {
    const body = await res.json().catch(() => ({})) as { code?: string, message?: string }
    return new AuthError(res.status, body.code ?? 'HTTP_' + res.status, body.message ?? res.statusText)
  }

  /** A JSON POST that needs no session (register, mailed links' tokens, forgot password); throws AuthError unless 2xx. */
  async function publicPost (path: string, body: unknown): Promise<void> {
    const res = await fetch(url(path), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
    if (!res.ok) throw await errorOf(res)
  }

  /** A call that needs the session (through `client.fetch`, with a JSON body when given); throws AuthError unless 2xx. */
  async function signedIn (path: string, method = 'GET', body?: unknown): Promise<Response> {
    const init: RequestInit = body === undefined ? { method } : { method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }
    const res = await client.fetch(path, init)
    if (!res.ok) throw await errorOf(res)
    return res
  }

  /** A cookie-mode request to the service: login, refresh, logout. */
  async function cookieRequest (path: string, body?: unknown): Promise<Response> {
    return await fetch(url(path), {
      method: 'POST',
      credentials: 'include',
      headers: body === undefined ? CUSTOM_HEADER : { ...CUSTOM_HEADER, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
  }

  async function refreshOnce (): Promise<boolean> {
    const stale = token
    const run = async (): Promise<boolean> => {
      // Another tab may have refreshed while this one waited for the lock.
      if (token !== null && token !== stale && !expiringSoon()) return true
      const res = await cookieRequest('/api/auth/refresh')
      if (res.ok) {
        accept(await res.json() as TokenResponse, 'refresh')
        return true
      }
      // 401: no cookie, or a session that has ended. Anything else (403 misconfigured origin,
      // 429, 5xx) is an error to report, not a logout.
      if (res.status === 401) {
        forget('session-ended')
        return false
      }
      throw await errorOf(res)
    }
    const locks = globalThis.navigator?.locks
    return locks === undefined ? await run() : await locks.request(`${name}:refresh`, run)
  }

  /** Refreshes the access token; concurrent callers in this tab share one refresh. False: not signed in. */
  function refresh (): Promise<boolean> {
    inflight ??= refreshOnce().finally(() => { inflight = null })
    return inflight
  }

  channel?.addEventListener('message', (event: MessageEvent<TabMessage>) => {
    const message = event.data
    if (message.type === 'token' && message.expiresAt > expiresAt) {
      token = message.accessToken
      expiresAt = message.expiresAt
      lifetimeMs = message.lifetimeMs
      emit({ authenticated: true, reason: 'other-tab' })
    } else if (message.type === 'logout' && token !== null) {
      // The cookie is shared by all tabs: check it once. It may already hold a new login;
      // otherwise the refresh fails and the session is reported as ended.
      expiresAt = 0
      refresh().catch(() => { forget('session-ended') })
    }
  })

  /** One passkey sign-in: options, the browser's assertion, the login (cookie mode, as `login`). */
  async function passkeyCeremony (useBrowserAutofill: boolean): Promise<void> {
    const options = await fetch(url('/api/auth/passkeys/login/options'), { method: 'POST' })
    if (!options.ok) throw await errorOf(options)
    const optionsJSON = await options.json() as PublicKeyCredentialRequestOptionsJSON
    const response = await startAuthentication({ optionsJSON, useBrowserAutofill })
    const res = await cookieRequest('/api/auth/passkeys/login', { response, transport: 'cookie' })
    if (!res.ok) throw await errorOf(res)
    accept(await res.json() as TokenResponse, 'login')
  }

  const client = {
    /**
     * Signs in; the service sets the refresh cookie. With a second factor on the account the
     * answer is `mfa-required` (finish with `verifyMfa`), or `mfa-enrollment-required` where
     * the service requires one the account lacks. `account` is a username, or `{ email }` (or
     * `{ username }`) as the service's LOGIN_IDENTIFIERS allow. Throws AuthError (401
     * INVALID_CREDENTIALS, 403 EMAIL_NOT_VERIFIED with REQUIRE_EMAIL_VERIFICATION, 429, ...).
     */
    async login (account: string | AccountName, password: string): Promise<LoginResult> {
      const name = typeof account === 'string' ? { username: account } : account
      const res = await cookieRequest('/api/auth/login', { ...name, password, transport: 'cookie' })
      if (!res.ok) throw await errorOf(res)
      if (res.status === 202) {
        const body = await res.json() as { mfaToken: string, mfaRequired?: true, methods?: Array<'totp' | 'recovery' | 'webauthn'>, webauthnOptions?: PublicKeyCredentialRequestOptionsJSON }
        pendingMfa = { token: body.mfaToken, purpose: body.mfaRequired === true ? 'login' : 'enroll', webauthnOptions: body.webauthnOptions }
        return body.mfaRequired === true ? { status: 'mfa-required', methods: body.methods ?? [] } : { status: 'mfa-enrollment-required' }
      }
      pendingMfa = null
      accept(await res.json() as TokenResponse, 'login')
      return { status: 'signed-in' }
    },

    /**
     * The second step of a login that answered `mfa-required`. Throws AuthError (403
     * MFA_CODE_INVALID: try again; 401 MFA_TOKEN_INVALID: log in again; 429).
     */
    async verifyMfa (factor: SecondFactor): Promise<void> {
      if (pendingMfa?.purpose !== 'login') throw new AuthError(401, 'MFA_TOKEN_INVALID', 'No login is waiting for a second factor; log in again')
      const res = await cookieRequest('/api/auth/mfa/verify', { mfaToken: pendingMfa.token, ...factor })
      if (!res.ok) {
        if (res.status === 401) pendingMfa = null
        throw await errorOf(res)
      }
      pendingMfa = null
      accept(await res.json() as TokenResponse, 'login')
    },

    /**
     * The second step of a login that answered `mfa-required` with `webauthn` among its
     * methods: the browser asks for one of the account's passkeys (the login's options list
     * them), and the assertion finishes the login. Throws AuthError as `verifyMfa`, or the
     * browser's error when no passkey was used.
     */
    async verifyMfaWithPasskey (): Promise<void> {
      const optionsJSON = pendingMfa?.purpose === 'login' ? pendingMfa.webauthnOptions : undefined
      if (optionsJSON === undefined) throw new AuthError(401, 'MFA_TOKEN_INVALID', 'No login is waiting for a passkey; log in again')
      const webauthn = await startAuthentication({ optionsJSON })
      await client.verifyMfa({ webauthn })
    },

    /** Starts TOTP enrolment (signed in, or after `mfa-enrollment-required`): the secret, its URI and a QR code (data URL). */
    async enrollTotp (): Promise<TotpEnrolment> {
      const res = pendingMfa?.purpose === 'enroll'
        ? await cookieRequest('/api/auth/mfa/totp/enroll', { mfaToken: pendingMfa.token })
        : await client.fetch('/api/auth/mfa/totp/enroll', { method: 'POST' })
      if (!res.ok) throw await errorOf(res)
      return await res.json() as TotpEnrolment
    },

    /**
     * Activates the enrolment with a code from the app; answers the ten recovery codes, to show
     * once. After `mfa-enrollment-required` this also finishes the login.
     */
    async confirmTotp (code: string): Promise<string[]> {
      const enrolling = pendingMfa?.purpose === 'enroll' ? pendingMfa : null
      const res = enrolling !== null
        ? await cookieRequest('/api/auth/mfa/totp/confirm', { mfaToken: enrolling.token, code })
        : await client.fetch('/api/auth/mfa/totp/confirm', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code }) })
      if (!res.ok) throw await errorOf(res)
      const body = await res.json() as { recoveryCodes: string[] } & Partial<TokenResponse>
      if (enrolling !== null && body.accessToken !== undefined) {
        pendingMfa = null
        accept(body as TokenResponse, 'login')
      }
      return body.recoveryCodes
    },

    /** Removes TOTP (and the recovery codes); needs the password and a current code. */
    async disableTotp (password: string, code: string): Promise<void> {
      await signedIn('/api/auth/mfa/totp', 'DELETE', { password, code })
    },

    /** Ten new recovery codes; the old ones stop working. */
    async regenerateRecoveryCodes (password: string): Promise<string[]> {
      const res = await signedIn('/api/auth/mfa/recovery-codes', 'POST', { password })
      return (await res.json() as { recoveryCodes: string[] }).recoveryCodes
    },

    /** Step-up: proves a credential again; the new access token carries a fresh auth_time. */
    async reauthenticate (credential: { password: string } | SecondFactor): Promise<void> {
      const res = await signedIn('/api/auth/reauthenticate', 'POST', credential)
      accept(await res.json() as TokenResponse, 'refresh')
    },

    /**
     * Creates an account (it does not sign in), with an e-mail address when `options.email` is
     * given (the service mails it a verification link). Throws AuthError (400 WEAK_PASSWORD,
     * INVALID_EMAIL, 409 USERNAME_TAKEN, EMAIL_TAKEN, ...).
     */
    async register (username: string, password: string, options: { email?: string } = {}): Promise<void> {
      const body = options.email === undefined || options.email === '' ? { username, password } : { username, password, email: options.email }
      await publicPost('/api/auth/register', body)
    },

    /**
     * Mails a new verification link to the signed-in account's address (an older link stops
     * working). Throws AuthError (409 NO_EMAIL, EMAIL_ALREADY_VERIFIED; 429; 503 MAIL_DISABLED).
     */
    async requestEmailVerification (): Promise<void> {
      await signedIn('/api/auth/email/verification', 'POST')
    },

    /** Verifies the address with the token of a mailed link. Throws AuthError (400 ACCOUNT_TOKEN_INVALID, 429). */
    async verifyEmail (token: string): Promise<void> {
      await publicPost('/api/auth/email/verify', { token })
    },

    /**
     * Asks to change the signed-in account's address: a confirmation link goes to `newEmail`,
     * and nothing changes until it is used (`confirmEmail`). Throws AuthError (403
     * INVALID_CURRENT_PASSWORD, 400 INVALID_EMAIL, 429, 503 MAIL_DISABLED, ...).
     */
    async changeEmail (newEmail: string, password: string): Promise<void> {
      await signedIn('/api/auth/email/change', 'POST', { newEmail, password })
    },

    /**
     * Spends the token of a mailed address-change link: the confirmation sent to the new
     * address, or the undo link sent to the old one. Throws AuthError (400 ACCOUNT_TOKEN_INVALID, 429).
     */
    async confirmEmail (token: string): Promise<void> {
      await publicPost('/api/auth/email/confirm', { token })
    },

    /**
     * Asks for a password-reset link for the account named by `{ email }` or `{ username }`. The
     * service answers the same whether or not the account exists, so this resolves alike for
     * both; it throws only for a refused request (400, 429, 503 MAIL_DISABLED).
     */
    async forgotPassword (account: AccountName): Promise<void> {
      await publicPost('/api/auth/password/forgot', account)
    },

    /**
     * Sets a new password with the token of a mailed reset link; every session of the account
     * ends (this client's too: sign in again). Throws AuthError (400 ACCOUNT_TOKEN_INVALID,
     * WEAK_PASSWORD: the link still works; 429).
     */
    async resetPassword (token: string, newPassword: string): Promise<void> {
      await publicPost('/api/auth/password/reset', { token, newPassword })
    },

    /**
     * Deletes the signed-in account, the password re-entered; its sessions end and this client
     * is signed out, in every tab. Throws AuthError (403 INVALID_CURRENT_PASSWORD, 429, ...).
     */
    async deleteAccount (password: string): Promise<void> {
      await signedIn('/api/auth/me', 'DELETE', { password })
      forget('logout')
      channel?.postMessage({ type: 'logout' } satisfies TabMessage)
    },

    /** Ends the session on the service and in every tab, also when the service cannot be reached. */
    async logout (): Promise<void> {
      try {
        const res = await cookieRequest('/api/auth/logout')
        if (!res.ok) throw await errorOf(res)
      } finally {
        forget('logout')
        channel?.postMessage({ type: 'logout' } satisfies TabMessage)
      }
    },

    /**
     * On page load: back in the session if the refresh cookie is still good. Without a sign-in
     * in this browser since the last sign-out, false at once, without a request.
     */
    async restore (): Promise<boolean> {
      if (token !== null && !expiringSoon()) return true
      return hasSessionHint() ? await refresh() : false
    },

    refresh,

    /** Registers a passkey for the signed-in user (the browser asks to create one). */
    async registerPasskey (name?: string): Promise<PasskeyInfo> {
      const options = await signedIn('/api/auth/passkeys/register/options', 'POST')
      const response = await startRegistration({ optionsJSON: await options.json() as PublicKeyCredentialCreationOptionsJSON })
      const res = await signedIn('/api/auth/passkeys/register', 'POST', name === undefined || name === '' ? { response } : { response, name })
      return await res.json() as PasskeyInfo
    },

    /**
     * Signs in with a passkey, no username: the browser lists the passkeys it holds for this
     * site. Aborts a pending `passkeyAutofill()` first (see the top of this file).
     */
    async signInWithPasskey (): Promise<void> {
      await passkeyCeremony(false)
    },

    /**
     * Offers the saved passkeys in the autofill of the page's `autocomplete="username webauthn"`
     * input and signs in when the user picks one. Resolves true once signed in, false when the
     * browser has no conditional mediation or the request was aborted (by the button, or
     * `cancelPasskeyRequest()`). Start it when the sign-in form is shown.
     */
    async passkeyAutofill (): Promise<boolean> {
      if (!await browserSupportsWebAuthnAutofill()) return false
      try {
        await passkeyCeremony(true)
        return true
      } catch (err) {
        if (isAbort(err)) return false
        throw err
      }
    },

    /** Cancels a pending passkey request (the autofill's, when the sign-in form goes away). */
    cancelPasskeyRequest (): void {
      WebAuthnAbortService.cancelCeremony()
    },

    async listPasskeys (): Promise<PasskeyInfo[]> {
      return await (await signedIn('/api/auth/passkeys')).json() as PasskeyInfo[]
    },

    async renamePasskey (id: string, name: string): Promise<PasskeyInfo> {
      return await (await signedIn(`/api/auth/passkeys/${encodeURIComponent(id)}`, 'PATCH', { name })).json() as PasskeyInfo
    },

    async deletePasskey (id: string): Promise<void> {
      await signedIn(`/api/auth/passkeys/${encodeURIComponent(id)}`, 'DELETE')
    },

    /**
     * `fetch` with the access token attached for the service's origin and `tokenOrigins`.
     * Relative URLs are resolved against the service. A 401 after a refresh that failed is
     * returned as it is (and onChange reports the session as ended).
     */
    async fetch (input: string | URL, init: RequestInit = {}): Promise<Response> {
      const target = new URL(input, base)
      if (!tokenOrigins.has(target.origin)) return await fetch(target, init)
      if (token === null || expiringSoon()) await refresh()
      const send = async (): Promise<{ res: Response, sent: string | null }> => {
        const sent = token
        const headers = new Headers(init.headers)
        if (sent !== null) headers.set('Authorization', `Bearer ${sent}`)
        return { res: await fetch(target, { ...init, headers }), sent }
      }
      const first = await send()
      if (first.res.status !== 401 || first.sent === null) return first.res
      // Refresh once (unless another call already did) and retry once.
      if (token === first.sent && !(await refresh())) return first.res
      return (await send()).res
    },

    /** The current access token (in memory only), or null. */
    get accessToken (): string | null { return token },
    /** When the access token expires, on this browser's clock (ms since the epoch); 0 when signed out. */
    get expiresAt (): number { return expiresAt },
    get authenticated (): boolean { return token !== null },

    /** Calls `listener` on every change of the signed-in state; returns a function that unsubscribes. */
    onChange (listener: (change: AuthChange) => void): () => void {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    }
  }
  return client
}

export type AuthClient = ReturnType<typeof createAuthClient>
