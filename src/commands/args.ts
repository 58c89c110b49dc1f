/**
 * Command-line parsing shared by every command: node's parseArgs for the syntax, zod for the values.
 * Each command declares one option table (`CommandSpec`); parsing and `--help` are both generated
 * from it, so the help can never list an option the parser rejects or miss one it accepts.
 */
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import type { z } from 'zod';
import { ValidationError } from '../core/errors.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** One command-line option: `--name VALUE` (string) or `--name` (boolean). */
export interface OptionDef {
  /** Long name without dashes, e.g. `data-dir`. */
  readonly name: string;
  readonly type: 'string' | 'boolean';
  /** One-letter alias, e.g. `h` for `-h`. */
  readonly short?: string;
  /** True when the option may be given several times (values collected in an array). */
  readonly multiple?: boolean;
  /** One line for `--help`; say the unit and any default that depends on the environment. */
  readonly description: string;
  /** Placeholder of the value in `--help` (string options), e.g. `N`, `FILE`. Default: `VALUE`. */
  readonly value?: string;
  /** Default value: passed to parseArgs and shown in `--help`. Leave unset when it comes from env/config. */
  readonly default?: string | boolean;
}

/** One command (or subcommand) of the CLI: its synopsis, options and examples. */
export interface CommandSpec {
  /** `ingest`, or `features show` for a subcommand. */
  readonly name: string;
  /** What it does, one line. */
  readonly summary: string;
  /** Positional arguments in the synopsis, e.g. `<path...>`; unset when the command takes none. */
  readonly positionals?: string;
  /** The command's own options (the common ones are added). */
  readonly options: readonly OptionDef[];
  /** At least one full command line, without the leading `mneme `. */
  readonly examples: readonly [string, ...string[]];
}

/** Options every command takes. */
export const COMMON_OPTION_DEFS: readonly OptionDef[] = [
  { name: 'data-dir', type: 'string', value: 'DIR', description: 'data directory (default: $MNEME_DATA_DIR, else ./data)' },
  { name: 'json', type: 'boolean', default: false, description: 'print the result as one line of JSON (the last stdout line)' },
  { name: 'help', type: 'boolean', short: 'h', default: false, description: 'print this help and exit' },
];

/** The parseArgs option table of `defs` (common options included). */
export function toParseArgsOptions(defs: readonly OptionDef[]): OptionSpec {
  const out: OptionSpec = {};
  for (const d of [...COMMON_OPTION_DEFS, ...defs]) {
    out[d.name] = {
      type: d.type,
      ...(d.short !== undefined ? { short: d.short } : {}),
      ...(d.multiple ? { multiple: true } : {}),
      ...(d.default !== undefined ? { default: d.multiple ? [d.default] : d.default } : {}),
    } as OptionSpec[string];
  }
  return out;
}

/** `--name VALUE` / `-h, --help` as shown in help and synopses. */
function flag(d: OptionDef): string {
  const long = `--${d.name}${d.type === 'string' ? ` ${d.value ?? 'VALUE'}` : ''}`;
  return d.short ? `-${d.short}, ${long}` : long;
}

/** One-line usage: `ingest <path...> [options]`. */
export function synopsis(spec: CommandSpec): string {
  return `${spec.name}${spec.positionals ? ` ${spec.positionals}` : ''} [options]`;
}

/** The option lines of `defs`, aligned: `  --port N    listen port (default …)`. */
function optionLines(defs: readonly OptionDef[]): string[] {
  const width = Math.max(...defs.map((d) => flag(d).length));
  return defs.map((d) => {
    const def = d.default !== undefined && d.default !== false ? ` (default: ${String(d.default)})` : '';
    const repeat = d.multiple ? ' (repeatable)' : '';
    return `  ${flag(d).padEnd(width)}  ${d.description}${def}${repeat}`;
  });
}

/**
 * The `--help` text of one or more (sub)command specs: synopsis, summary, every option with its
 * description, then examples. The common options are listed once, at the end.
 */
export function formatHelp(specs: readonly CommandSpec[]): string {
  const lines: string[] = [];
  for (const spec of specs) {
    lines.push(`usage: mneme ${synopsis(spec)}`, `  ${spec.summary}`, '');
    if (spec.options.length > 0) lines.push('options:', ...optionLines(spec.options), '');
    lines.push('examples:', ...spec.examples.map((e) => `  mneme ${e}`), '');
  }
  lines.push('common options:', ...optionLines(COMMON_OPTION_DEFS), '');
  return lines.join('\n');
}

/**
 * Parses `args` against the option table of `spec` and validates the values with `schema`.
 * Positionals are allowed when `spec.positionals` is set.
 * @throws ValidationError naming the bad flag.
 */
export function parseCommandArgs<S extends z.ZodType>(spec: CommandSpec, args: string[], schema: S): z.infer<S> & { positionals: string[] } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: toParseArgsOptions(spec.options), allowPositionals: spec.positionals !== undefined, strict: true }) as typeof parsed;
  } catch (cause) {
    throw new ValidationError(`${spec.name}: ${(cause as Error).message}`, { cause });
  }
  const res = schema.safeParse(parsed.values);
  if (!res.success) {
    const issue = res.error.issues[0];
    throw new ValidationError(`${spec.name}: --${String(issue?.path[0] ?? '?')}: ${issue?.message ?? 'invalid'}`, { cause: res.error });
  }
  return Object.assign(res.data as object, { positionals: parsed.positionals }) as z.infer<S> & { positionals: string[] };
}

/** Writes one line of JSON (the machine-readable last line of a --json command). */
export function printJson(out: NodeJS.WritableStream, value: unknown): void {
  out.write(`${JSON.stringify(value)}\n`);
}
