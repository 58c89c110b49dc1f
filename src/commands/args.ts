/**
 * Command-line parsing shared by every command: node's parseArgs for the syntax, zod for the values.
 */
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import type { z } from 'zod';
import { ValidationError } from '../core/errors.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const COMMON_OPTIONS = {
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies OptionSpec;

/**
 * Parses `args` against `options` and validates the result with `schema`.
 * @throws ValidationError naming the bad flag.
 */
export function parseCommandArgs<S extends z.ZodType>(
  command: string,
  args: string[],
  options: OptionSpec,
  schema: S,
  allowPositionals = false,
): z.infer<S> & { positionals: string[] } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals, strict: true }) as typeof parsed;
  } catch (cause) {
    throw new ValidationError(`${command}: ${(cause as Error).message}`, { cause });
  }
  const res = schema.safeParse(parsed.values);
  if (!res.success) {
    const issue = res.error.issues[0];
    throw new ValidationError(`${command}: --${String(issue?.path[0] ?? '?')}: ${issue?.message ?? 'invalid'}`, { cause: res.error });
  }
  return Object.assign(res.data as object, { positionals: parsed.positionals }) as z.infer<S> & { positionals: string[] };
}

/** Writes one line of JSON (the machine-readable last line of a --json command). */
export function printJson(out: NodeJS.WritableStream, value: unknown): void {
  out.write(`${JSON.stringify(value)}\n`);
}
