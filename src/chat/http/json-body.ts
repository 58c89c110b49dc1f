/**
 * The JSON body parser of the chat app: express.json (size limit, charset, Content-Encoding
 * gzip/deflate/br) plus a nesting-depth check on the decoded bytes BEFORE `JSON.parse`, so a small
 * body nested thousands of levels deep is refused with 400 at parse time instead of reaching code
 * that recurses over it (validation, logging, serialization).
 *
 * Errors go to the one error mapping (errors.ts): depth → JsonTooDeepError (400 `invalid_json`),
 * corrupt compressed body → 400, unknown Content-Encoding → 415, over the limit → 413.
 */
import express from 'express';
import type { RequestHandler } from 'express';
import { MnemeError } from '../../core/errors.ts';

/** Default deepest nesting of arrays/objects accepted, in levels (MNEME_JSON_MAX_DEPTH). */
export const DEFAULT_JSON_MAX_DEPTH = 64;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** 400 `invalid_json`: the JSON body nests deeper than the configured limit. */
export class JsonTooDeepError extends MnemeError {
  constructor(maxDepth: number) {
    super('invalid_json', 400, `the JSON body nests arrays/objects deeper than ${maxDepth} levels`);
  }
}

/**
 * Deepest array/object nesting in the JSON text `buf` (UTF-8), counting brackets outside strings.
 * Linear, no recursion, no allocation. Stops early (returning a value > maxDepth) once `maxDepth` is
 * exceeded. Malformed JSON is not detected here (JSON.parse does that next). Pure.
 */
export function jsonNestingDepth(buf: Uint8Array, maxDepth = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
      continue;
    }
    if (b === QUOTE) inString = true;
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > maxDepth) return deepest;
      }
    } else if ((b === CLOSE_BRACE || b === CLOSE_BRACKET) && depth > 0) depth--;
  }
  return deepest;
}

export interface JsonBodyOptions {
  /** Largest body accepted (after decompression), in bytes. */
  limitBytes: number;
  /** Deepest nesting accepted, in levels. Default DEFAULT_JSON_MAX_DEPTH. */
  maxDepth?: number;
}

/**
 * Middleware parsing `application/json` and `application/*+json` bodies; other bodies leave
 * `req.body` undefined (the route's validation answers 400).
 */
export function jsonBody(options: JsonBodyOptions): RequestHandler {
  const maxDepth = options.maxDepth ?? DEFAULT_JSON_MAX_DEPTH;
  return express.json({
    limit: options.limitBytes,
    type: ['application/json', 'application/*+json'],
    // Runs on the decoded bytes, before JSON.parse; a throw aborts parsing with the error's status.
    verify: (_req, _res, buf) => {
      if (jsonNestingDepth(buf, maxDepth) > maxDepth) throw new JsonTooDeepError(maxDepth);
    },
  });
}
