/**
 * The links mailed messages carry: the link base (APP_URL, else PUBLIC_URL) + a page's path +
 * `?token=`. Each path names a page, never an API endpoint: opening a link spends nothing. The
 * page (the app's at APP_URL, or the minimal one the service serves at the same path under
 * PUBLIC_URL) shows a button whose POST spends the token (docs/accounts.md).
 */
export const ACCOUNT_PAGES = {
  verifyEmail: '/account/verify-email',
  resetPassword: '/account/reset-password',
  confirmEmail: '/account/confirm-email',
  undoEmailChange: '/account/undo-email-change'
} as const

export type AccountPage = keyof typeof ACCOUNT_PAGES

export function accountLink (linkBase: string, page: AccountPage, token: string): string {
  return `${linkBase}${ACCOUNT_PAGES[page]}?token=${encodeURIComponent(token)}`
}
