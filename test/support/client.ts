/**
 * The browser client (packages/client), loaded by a path the tests' type check does not follow:
 * the client is typed against the DOM library, which the tests' tsconfig leaves out. Each test
 * types what it uses of a client as `C`.
 */
export interface ClientModule<C> {
  AuthError: new (status: number, code: string, message: string) => Error
  createAuthClient: (options: { baseUrl: string }) => C
}

export async function loadAuthClient<C> (): Promise<ClientModule<C>> {
  const clientModule = '../../packages/client/src/auth-client.js'
  return await import(clientModule) as ClientModule<C>
}
