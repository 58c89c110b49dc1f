/**
 * The PostgreSQL test server: `MNEME_TEST_DATABASE_URL` (an administrative URL, e.g.
 * postgres://postgres@127.0.0.1:5432/postgres). Each store under test gets a fresh database
 * `mneme_test_<random>` on that server, dropped when the test file ends.
 *
 * Unset or unreachable: the PostgreSQL suites skip with the reason printed, unless `CI` is set — a
 * CI run must exercise this engine, so there the reason fails the run instead.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const TEST_DATABASE_URL_VAR = 'MNEME_TEST_DATABASE_URL';
/** How long the reachability probe waits for the server, in ms. */
export const PROBE_TIMEOUT_MS = 3_000;
/** Databases dropped at once when a test file ends. */
const DROP_CONCURRENCY = 4;


export interface PostgresTestServer {
  /** The administrative URL. */
  adminUrl: string;
  /** Creates an empty database and returns its URL (dropped by dropCreatedDatabases). */
  createDatabase(): Promise<string>;
  /** Drops every database createDatabase made (connections to them are terminated). */
  dropCreatedDatabases(): Promise<void>;
}

export type PostgresAvailability = { server: PostgresTestServer; reason: null } | { server: null; reason: string };

/** True when the environment demands that every engine runs (a CI run). */
export function engineRunsRequired(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** Probes `MNEME_TEST_DATABASE_URL`; never throws. */
export async function findPostgresTestServer(): Promise<PostgresAvailability> {
  const adminUrl = process.env[TEST_DATABASE_URL_VAR];
  if (!adminUrl) return { server: null, reason: `${TEST_DATABASE_URL_VAR} is not set` };
  const probe = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  try {
    await probe.connect();
    await probe.query('SELECT 1');
  } catch (err) {
    return { server: null, reason: `${TEST_DATABASE_URL_VAR}=${adminUrl} is unreachable: ${(err as Error).message}` };
  } finally {
    await probe.end().catch(() => undefined);
  }
  return { server: makeServer(adminUrl), reason: null };
}

function makeServer(adminUrl: string): PostgresTestServer {
  const created: string[] = [];
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  return {
    adminUrl,
    async createDatabase() {
      const name = `mneme_test_${randomBytes(6).toString('hex')}`;
      await admin((c) => c.query(`CREATE DATABASE ${name}`));
      created.push(name);
      const u = new URL(adminUrl);
      u.pathname = `/${name}`;
      return u.toString();
    },
    async dropCreatedDatabases() {
      const names = created.splice(0);
      // A few drops at once: each waits on the server's file work, and a suite creates dozens.
      const workers = Array.from({ length: Math.min(DROP_CONCURRENCY, names.length) }, () =>
        admin(async (c) => {
          for (let name = names.pop(); name !== undefined; name = names.pop()) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        }),
      );
      await Promise.all(workers);
    },
  };
}
