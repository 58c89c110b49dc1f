/**
 * `mneme serve [--port N] [--host H]`: the chat HTTP server (defaults MNEME_PORT / MNEME_HOST).
 * Prints the URL once listening, runs the feature materializer every MNEME_FEATURES_INTERVAL_S, and
 * shuts down gracefully on SIGINT/SIGTERM:
 *   stop accepting (new requests on open connections get 503 shutting_down) → let running answers
 *   finish for up to MNEME_SHUTDOWN_GRACE_S (default 10 s) → cancel the rest and the generation
 *   queue (each cancelled answer still writes its 'cancelled' prediction-log row; a stream that
 *   already sent tokens keeps them in the row) → wait for those rows → close connections, the
 *   model, the embedder and finally the store → exit 0.
 * A second signal skips the grace period.
 */
import type { Server } from 'node:http';
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { ConfigError, ConflictError } from '../core/errors.ts';
import type { Config } from '../core/config.ts';
import { createApp } from '../chat/http/app.ts';
import { buildServerDeps } from '../chat/http/wiring.ts';
import type { ServerDeps } from '../chat/http/wiring.ts';
import { jsonLineLogger } from '../chat/log.ts';
import type { Logger } from '../chat/log.ts';
import { failInterruptedJobs, JOB_STALE_MS } from '../chat/jobs.ts';
import { startFeatureScheduler } from '../features/materialize.ts';
import { ensureWebBuilt } from '../web/build.ts';
import { uploadIngester } from '../../ingest/upload.ts';
import { parseCommandArgs, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

/**
 * After cancelling, how long to wait at most for the cancelled answers to log their rows, in ms
 * (they do so as soon as the abort reaches them; the bound only guards against a stuck store).
 */
export const SHUTDOWN_CANCEL_WAIT_MS = 10_000;

export interface StartServerOptions {
  /** Operational log (default: JSON lines on io.stderr). */
  logger?: Logger;
  /** Grace period for running answers, in ms. Default config.server.shutdownGraceMs (MNEME_SHUTDOWN_GRACE_S). */
  graceMs?: number;
  /** Prebuilt dependencies (tests); default buildServerDeps(config). */
  deps?: ServerDeps;
}

export interface RunningServer {
  /** http://host:port actually bound (port 0 resolved). */
  url: string;
  server: Server;
  deps: ServerDeps;
  /** Graceful shutdown (idempotent; concurrent calls share one run). `force` skips the grace period. */
  shutdown(opts?: { force?: boolean }): Promise<void>;
}

/** Builds the deps, listens, starts the feature scheduler. Resolves once listening. */
export async function startServer(config: Config, io: CommandIo, options: StartServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? jsonLineLogger(io.stderr);
  const deps = options.deps ?? (await buildServerDeps(config, { logger }));
  const graceMs = options.graceMs ?? config.server.shutdownGraceMs;
  for (const w of deps.warnings) io.stderr.write(`warning: ${w}\n`);
  await buildPagesIfStale(deps.webAssetsDir, io, logger);
  // Uploads (POST /v1/documents) run the ingest pipeline, which the chat pipeline does not import.
  const ingestFiles = uploadIngester({ store: deps.store, dataDir: config.dataDir, maxFileBytes: config.maxFileBytes, embedder: deps.embedder });
  const app = createApp({ ...deps, logger, ingestFiles });
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.server.port, config.server.host, (err?: Error) => (err ? reject(err) : resolve(s)));
      s.once('error', reject);
    });
  } catch (err) {
    await deps.close();
    throw listenError(err, config);
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.server.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  const url = `http://${host}:${port}`;

  // Jobs left queued/running by a process that died are failed now and then every JOB_STALE_MS
  // (only jobs whose row went stale: other replicas' live jobs are left alone; src/chat/jobs.ts).
  const sweepJobs = () =>
    failInterruptedJobs(deps.store)
      .then((n) => (n > 0 ? logger.warn('failed interrupted jobs', { jobs: n }) : undefined))
      .catch((err: unknown) => logger.error('failing interrupted jobs failed', { error: (err as Error).message }));
  await sweepJobs();
  const jobSweep = setInterval(() => void sweepJobs(), JOB_STALE_MS);
  jobSweep.unref();

  const scheduler = startFeatureScheduler(
    deps.store,
    config.featuresIntervalSeconds,
    (err) => logger.error('feature materialization failed', { error: (err as Error).message }),
    { online: deps.redis?.sync },
  );

  let shuttingDown: Promise<void> | null = null;
  let forced = false;
  const shutdown = (opts: { force?: boolean } = {}): Promise<void> => {
    if (opts.force && !forced) {
      forced = true;
      deps.inflight.abortAll('server shutting down');
    }
    shuttingDown ??= (async () => {
      logger.info('shutting down', { running_answers: deps.inflight.size() });
      deps.inflight.beginShutdown();
      scheduler.stop();
      clearInterval(jobSweep);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (!(await deps.inflight.idle(forced ? 0 : graceMs))) {
        logger.warn('grace period over: cancelling running answers', { running_answers: deps.inflight.size() });
        deps.inflight.abortAll('server shutting down');
        const queueClosed = deps.queue.close({ cancelInFlight: true });
        if (!(await deps.inflight.idle(SHUTDOWN_CANCEL_WAIT_MS))) {
          logger.error('cancelled answers did not finish; their log rows may be missing', { running_answers: deps.inflight.size() });
        }
        await queueClosed;
      }
      await deps.queue.close({ cancelInFlight: true });
      server.closeAllConnections();
      await closed;
      await deps.close();
      logger.info('stopped');
    })();
    return shuttingDown;
  };
  return { url, server, deps, shutdown };
}

/**
 * Builds the web pages when missing or stale (`GET /` works right after `npm ci`); a failed build
 * is a warning, not a failed start (the API does not need the pages).
 */
async function buildPagesIfStale(outDir: string | undefined, io: CommandIo, logger: Logger): Promise<void> {
  try {
    const r = await ensureWebBuilt({ outDir });
    if (r.built) logger.info('web pages built', { reason: r.reason, ms: r.ms });
  } catch (err) {
    io.stderr.write(`warning: building the web pages failed (${err instanceof Error ? err.message : String(err)}); the API works, the pages answer 503 until \`npm run build\` succeeds\n`);
  }
}

/**
 * A listen failure as the operator should read it: a busy port → ConflictError
 * `port N is in use (--port or MNEME_PORT)`, a refused bind → ConfigError naming host and port;
 * anything else unchanged. (The CLI prints a MnemeError's message and exits 1, no stack trace.)
 */
export function listenError(err: unknown, config: Config): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const { host, port } = config.server;
  if (code === 'EADDRINUSE') return new ConflictError(`port ${port} is in use (--port or MNEME_PORT)`, { cause: err });
  if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    return new ConfigError(`cannot listen on ${host}:${port}: ${code === 'EACCES' ? 'permission denied' : 'address not available'} (--host/--port or MNEME_HOST/MNEME_PORT)`, { cause: err });
  }
  return err;
}

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  port: z.coerce.number().int().min(0).max(65_535).optional(),
  host: z.string().min(1).optional(),
});

/** The option table of `mneme serve` (parsing and --help). */
export const SERVE_SPEC: CommandSpec = {
  name: 'serve',
  summary: 'run the chat HTTP server (OpenAI-compatible API, web pages, /metrics) until SIGINT/SIGTERM',
  options: [
    { name: 'port', type: 'string', value: 'N', description: 'TCP port to listen on, 0 for any free port (default: $MNEME_PORT, else 8080)' },
    { name: 'host', type: 'string', value: 'H', description: 'address to bind (default: $MNEME_HOST, else 127.0.0.1)' },
  ],
  examples: ['serve', 'serve --port 9000 --host 0.0.0.0 --data-dir /srv/mneme'],
};

export const serveCommand: Command = {
  name: 'serve',
  usage: synopsis(SERVE_SPEC),
  specs: [SERVE_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(SERVE_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'], port: opts.port, host: opts.host });
    const running = await startServer(config, io);
    const { model } = running.deps;
    io.stdout.write(
      `mneme listening on ${running.url} (chat model: ${model.backend} ${model.modelId}; retrieval: ${running.deps.vectors?.embedder ? 'hybrid' : 'BM25 only'})\n`,
    );
    await new Promise<void>((resolve) => {
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        signals++;
        io.stderr.write(signals === 1 ? `\n${signal}: shutting down (again to cancel running answers)\n` : `${signal}: cancelling running answers\n`);
        running.shutdown({ force: signals > 1 }).then(() => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolve();
        }, resolve);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
    return 0;
  },
};
