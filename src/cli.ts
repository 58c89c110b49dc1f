/**
 * `mneme <command> [options]`. Each command lives in src/commands/; this file dispatches and turns
 * errors into a message and an exit code (1: the run could not proceed, 2: bad usage).
 */
import { MnemeError, ValidationError } from './core/errors.ts';
import { formatHelp } from './commands/args.ts';
import { doctorCommand } from './commands/doctor.ts';
import { evalCommand } from './commands/eval.ts';
import { exportCommand } from './commands/export.ts';
import { featuresCommand } from './commands/features.ts';
import { ingestCommand } from './commands/ingest.ts';
import { migrateCommand } from './commands/migrate.ts';
import { modelsCommand } from './commands/models.ts';
import { reindexCommand } from './commands/reindex.ts';
import { releasesCommand } from './commands/releases.ts';
import { serveCommand } from './commands/serve.ts';
import type { Command, CommandIo } from './commands/types.ts';
import { usersCommand } from './commands/users.ts';
import { collectionsCommand } from './commands/collections.ts';
import { groupsCommand } from './commands/groups.ts';

export const COMMANDS: Command[] = [
  ingestCommand,
  serveCommand,
  usersCommand,
  collectionsCommand,
  groupsCommand,
  releasesCommand,
  featuresCommand,
  exportCommand,
  evalCommand,
  modelsCommand,
  reindexCommand,
  migrateCommand,
  doctorCommand,
];

function usage(): string {
  return [
    'usage: mneme <command> [options]   (every command takes --data-dir DIR; default $MNEME_DATA_DIR or ./data)',
    '',
    ...COMMANDS.map((c) => `  mneme ${c.usage}`),
    '',
  ].join('\n');
}

export async function main(argv: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env, isTty: Boolean(process.stderr.isTTY) }): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    io.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`mneme: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(formatHelp(command.specs));
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof ValidationError) {
      io.stderr.write(`mneme: ${err.message}\nusage: mneme ${command.usage}\n`);
      return 2;
    }
    if (err instanceof MnemeError) {
      io.stderr.write(`mneme ${name}: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(`mneme ${name}: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}
