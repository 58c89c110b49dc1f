/**
 * Lua scripts of the Redis engine, registered on a client with `defineCommand` (ioredis sends
 * EVALSHA and falls back to EVAL after a NOSCRIPT, in pipelines too). Each script runs atomically.
 */
import type { ChainableCommander, Redis } from 'ioredis';

/** A script as a method of the client (and of its pipelines). */
export type ScriptCall<R> = (...keysThenArgs: Array<string | number>) => Promise<R>;

export interface ScriptSpec {
  name: string;
  numberOfKeys: number;
  lua: string;
}

/** Registers `spec` on `client` once (several stores may share a client). */
export function defineScript(client: Redis, spec: ScriptSpec): void {
  if (typeof (client as unknown as Record<string, unknown>)[spec.name] === 'function') return;
  client.defineCommand(spec.name, { numberOfKeys: spec.numberOfKeys, lua: spec.lua });
}

/** The registered script `name` on a client or pipeline. */
export function script<R>(target: Redis | ChainableCommander, name: string): ScriptCall<R> {
  const fn = (target as unknown as Record<string, ScriptCall<R> | undefined>)[name];
  if (typeof fn !== 'function') throw new TypeError(`redis script ${name} is not defined on this client`);
  return fn.bind(target);
}

/**
 * Online feature write. KEYS[1] = the user's hash, KEYS[2] = the user's erasure tombstone.
 * ARGV[1] = version (integer >= 0, or -1 = unversioned), ARGV[2] = '1' to write only when the hash
 * is absent (a read-through fill), ARGV[3..] = field, value pairs. Field `@v` holds the highest
 * version written. Returns 1 when written, 0 when skipped (tombstoned, present for a fill, or the
 * hash already holds a newer version).
 */
export const ONLINE_WRITE_SCRIPT: ScriptSpec = {
  name: 'mnemeOnlineWrite',
  numberOfKeys: 2,
  lua: `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[2] == '1' and exists then return 0 end
local v = tonumber(ARGV[1])
local cur = 0
if exists then cur = tonumber(redis.call('HGET', KEYS[1], '@v') or '0') or 0 end
local keep = cur
if v >= 0 then
  if v < cur then return 0 end
  keep = v
end
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], '@v', tostring(keep), unpack(ARGV, 3))
else
  redis.call('HSET', KEYS[1], '@v', tostring(keep))
end
return 1
`,
};

/**
 * Token bucket: refill, then take one token when ARGV[2] == '1'. KEYS[1] = the bucket (hash with
 * `tokens` and `ms`). ARGV[1] = capacity (tokens per minute, also the burst), ARGV[2] = '1' take /
 * '0' peek, ARGV[3] = now in ms, or '' for the Redis server's clock (one clock for every replica).
 * The key expires once the bucket would be full again (an absent bucket is a full one).
 * Returns {allowed 1/0, tokens left as a string (Lua numbers would be truncated to integers)}.
 */
export const TOKEN_BUCKET_SCRIPT: ScriptSpec = {
  name: 'mnemeTokenBucket',
  numberOfKeys: 1,
  lua: `
local cap = tonumber(ARGV[1])
local now = tonumber(ARGV[3])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rate = cap / 60000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(b[1])
local ms = tonumber(b[2])
if tokens == nil or ms == nil then tokens = cap; ms = now end
tokens = math.min(cap, tokens + math.max(0, now - ms) * rate)
local allowed = 0
if tokens >= 1 then allowed = 1 end
if ARGV[2] == '1' then
  if allowed == 1 then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate) + 1000)
end
return {allowed, tostring(tokens)}
`,
};
