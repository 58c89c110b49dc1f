/**
 * Corpus-change notices over Redis pub/sub: an ingest publishes the change-feed head after each
 * committed window, and every `serve` replica subscribed pokes its index syncer, so it applies the
 * change feed at once instead of at its next poll. Notices are hints, never the truth: a lost one
 * (Redis down, a subscriber reconnecting) only means the change is applied at the next poll
 * (FEED_POLL_INTERVAL_MS), and after a reconnect the subscriber is told `null` (“maybe missed some”).
 * Channel: `<prefix>:corpus`; message: the head as decimal text.
 */
import type { Redis } from 'ioredis';
import { checkPrefix, closeRedis, redisCall } from './connection.ts';

/** Wait before retrying a subscription that failed (Redis down), in ms. */
export const NOTIFY_RESUBSCRIBE_MS = 5000;

export interface CorpusNotifierOptions {
  /** Publishes on this client; subscribing uses a duplicate of it (a subscribed connection can do nothing else). */
  client: Redis;
  /** Key prefix (MNEME_REDIS_PREFIX); default `mneme`. */
  prefix?: string | undefined;
  /** `close()` quits `client` too. Default false. */
  ownsClient?: boolean | undefined;
}

/** Called with the published head, or null after a reconnect (notices may have been missed). */
export type CorpusChangeListener = (head: number | null) => void;

export class CorpusNotifier {
  readonly channel: string;
  private readonly client: Redis;
  private readonly ownsClient: boolean;
  private readonly subscribers = new Set<Redis>();
  private readonly pending = new Set<Promise<unknown>>();

  /** @throws RangeError for a bad prefix. */
  constructor(opts: CorpusNotifierOptions) {
    this.client = opts.client;
    this.channel = `${checkPrefix(opts.prefix)}:corpus`;
    this.ownsClient = opts.ownsClient ?? false;
  }

  /**
   * Publishes `feedHead`.
   * @returns the number of subscribers that received it.
   * @throws RedisUnavailableError.
   */
  async publish(feedHead: number): Promise<number> {
    const p = redisCall('PUBLISH', this.client.publish(this.channel, String(feedHead)));
    this.pending.add(p);
    try {
      return await p;
    } finally {
      this.pending.delete(p);
    }
  }

  /**
   * Calls `onChange` for every notice until the returned function is called. Resolves once the
   * subscription is active (a notice published after that is delivered).
   * @throws RedisUnavailableError when the subscription cannot be made.
   */
  async subscribe(onChange: CorpusChangeListener): Promise<() => Promise<void>> {
    const sub = this.client.duplicate();
    sub.on('error', () => {});
    this.subscribers.add(sub);
    let ready = false;
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      const head = Number(message);
      onChange(Number.isFinite(head) ? head : null);
    });
    // ioredis resubscribes after a reconnect; notices sent while disconnected are lost.
    sub.on('ready', () => {
      if (ready) onChange(null);
    });
    try {
      await redisCall('SUBSCRIBE', sub.subscribe(this.channel));
    } catch (err) {
      this.subscribers.delete(sub);
      sub.disconnect();
      throw err;
    }
    ready = true;
    return async () => {
      if (!this.subscribers.delete(sub)) return;
      await closeRedis(sub);
    };
  }

  /**
   * `subscribe`, retried every NOTIFY_RESUBSCRIBE_MS until it works (Redis may be down when the
   * server starts); `onError` hears each failed attempt. Stop with the returned function.
   */
  follow(onChange: CorpusChangeListener, onError?: (err: Error) => void): () => Promise<void> {
    let stopped = false;
    let unsubscribe: (() => Promise<void>) | null = null;
    let timer: NodeJS.Timeout | null = null;
    const attempt = (): void => {
      timer = null;
      this.subscribe(onChange).then(
        (unsub) => {
          if (stopped) void unsub();
          else unsubscribe = unsub;
        },
        (err: unknown) => {
          onError?.(err as Error);
          if (!stopped) {
            timer = setTimeout(attempt, NOTIFY_RESUBSCRIBE_MS);
            timer.unref();
          }
        },
      );
    };
    attempt();
    return async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await unsubscribe?.();
    };
  }

  /** Waits for publishes in flight, then closes every subscription (and the client when owned). Idempotent. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    const subs = [...this.subscribers];
    this.subscribers.clear();
    await Promise.all(subs.map((s) => closeRedis(s)));
    if (this.ownsClient) await closeRedis(this.client);
  }
}
