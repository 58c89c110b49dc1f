import type { Writable } from 'node:stream';
import type { CommandSpec } from './args.ts';

/** Where a command writes; tests pass buffers, the CLI passes process streams. */
export interface CommandIo {
  stdout: Writable;
  stderr: Writable;
  env: Record<string, string | undefined>;
  /** True when stderr is a terminal (progress bars). */
  isTty: boolean;
}

export interface Command {
  name: string;
  /** One-line usage shown by `mneme help` (derive it from `specs` with `synopsis`). */
  usage: string;
  /** The option table of the command, one per subcommand; `mneme <name> --help` is generated from it. */
  specs: readonly CommandSpec[];
  /** Runs the command; resolves to the exit code. Throws MnemeError for clean failures. */
  run(args: string[], io: CommandIo): Promise<number>;
}
