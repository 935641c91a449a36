/**
 * The per-request logger, made when it is first used.
 *
 * Fastify gives every request a child logger carrying its id. pino's `child()` serializes those
 * bindings through the redaction pass, as every line of the redacting logger is: about 4 µs a
 * request (2 % of a refresh's event-loop time, in `node --cpu-prof` under a refresh flood). Most
 * requests never log through it: the one line every request writes has its own logger
 * (src/app.ts). So `request.log` is this stand-in, which makes the real child on the first call
 * that needs it and hands every later call to that child, with the same bindings, options
 * (a route's `logLevel`, its serializers) and redaction as Fastify's own.
 */
import type { FastifyBaseLogger } from 'fastify'

type Bindings = Parameters<FastifyBaseLogger['child']>[0]
type ChildLoggerOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>

type Args = unknown[]

export class LazyChildLogger implements FastifyBaseLogger {
  #child: FastifyBaseLogger | undefined
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions

  constructor (parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  /** The real child logger, made now if it was not yet. */
  get made (): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options)
    return this.#child
  }

  /** True once a call has needed the real child. */
  get isMade (): boolean { return this.#child !== undefined }

  get level (): string { return this.#child?.level ?? this.#options.level ?? this.#parent.level }
  set level (level: string) { this.made.level = level }

  fatal (...args: Args): void { call(this.made, 'fatal', args) }
  error (...args: Args): void { call(this.made, 'error', args) }
  warn (...args: Args): void { call(this.made, 'warn', args) }
  info (...args: Args): void { call(this.made, 'info', args) }
  debug (...args: Args): void { call(this.made, 'debug', args) }
  trace (...args: Args): void { call(this.made, 'trace', args) }
  silent (...args: Args): void { call(this.made, 'silent', args) }

  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.made.child(bindings, options)
  }
}

function call (logger: FastifyBaseLogger, method: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent', args: Args): void {
  Reflect.apply(logger[method], logger, args)
}

/** Fastify's `childLoggerFactory`. */
export function lazyChildLoggerFactory (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return new LazyChildLogger(logger, bindings, options)
}
