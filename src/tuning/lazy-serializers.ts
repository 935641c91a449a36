/**
 * Response serializers built at a route's first answer with a given status, instead of all of
 * them at start.
 *
 * Why: Fastify compiles a fast-json-stringify function for every response schema of every route
 * before it is ready, and most of them (error statuses, account, MFA and passkey routes) answer
 * rarely or never in a given process. Building them on first use shortens the start and leaves
 * less start-up garbage in the heap; the figures are in docs/decisions/0017-lazy-serializers.md.
 *
 * What it does, and only this: the compiler Fastify uses by default
 * (`@fastify/fast-json-stringify-compiler`), with the same schemas and options, called at the
 * first serialization instead of at registration. The first answer of each route and status
 * pays the compilation (a few milliseconds); every later one uses the built function.
 */
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler'

type SerializerFactory = ReturnType<typeof SerializerSelector>
type Compile = ReturnType<SerializerFactory>

export function lazySerializers (): SerializerFactory {
  const build = SerializerSelector()
  return (externalSchemas, options) => {
    const compile = build(externalSchemas, options)
    return ((route) => {
      let serialize: ((doc: unknown) => string) | undefined
      return (doc: unknown) => (serialize ??= compile(route))(doc)
    }) satisfies Compile
  }
}
