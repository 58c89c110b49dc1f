/**
 * Layering (issue 11, item 7): the rules of .dependency-cruiser.mjs hold for src/ and ingest/, run by
 * dependency-cruiser's API on every `npm test` (`npm run lint:layers` runs the same rules from the CLI).
 *
 * The second suite cruises a small tree written to a temp dir that breaks every rule once, so a rule
 * that silently stopped matching (a path regex typo, a dependency type dependency-cruiser renamed)
 * fails here instead of letting violations through.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cruise } from 'dependency-cruiser';
import type { ICruiseOptions, ICruiseResult, IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

const REPO_ROOT = join(import.meta.dirname, '../..');
const CONFIG_FILE = join(REPO_ROOT, '.dependency-cruiser.mjs');
/** The product code the rules cover (tests, benches and bin/ are outside the layering). */
const CRUISED = ['src', 'ingest'];

/**
 * Cruises `dirs` (relative to `baseDir`) with the project's rules.
 * @returns the violations (errors and warnings alike) and the number of modules seen.
 */
async function cruiseWithProjectRules(baseDir: string, dirs: string[]): Promise<{ violations: IViolation[]; modules: number }> {
  const options: ICruiseOptions = { ...(await extractDepcruiseOptions(CONFIG_FILE)), baseDir, validate: true };
  const tsConfig = extractTSConfig(join(baseDir, 'tsconfig.json'));
  const { output } = await cruise(dirs, options, undefined, { tsConfig });
  if (typeof output === 'string') throw new TypeError('dependency-cruiser returned a report string, expected a cruise result');
  const result: ICruiseResult = output;
  return { violations: result.summary.violations, modules: result.modules.length };
}

/** One line per violation, naming the rule, the import (or the cycle) and how to fix it. */
function describeViolation(v: IViolation): string {
  const edge = v.cycle && v.cycle.length > 0 ? [v.from, ...v.cycle.map((c) => c.name)].join(' → ') : `${v.from} → ${v.to}`;
  return `${v.rule.name}: ${edge}`;
}

describe('layering of src/ and ingest/', () => {
  it('breaks none of the rules in .dependency-cruiser.mjs', async () => {
    const { violations, modules } = await cruiseWithProjectRules(REPO_ROOT, CRUISED);
    expect(modules).toBeGreaterThan(50);
    const lines = violations.map(describeViolation).sort();
    expect(lines, `layering violations (fix by moving the shared piece down; see the rule comments in .dependency-cruiser.mjs):\n${lines.join('\n')}`).toEqual([]);
  });
});

describe('the layering rules catch what they forbid', () => {
  let dir = '';
  /** Writes a fixture file (relative path → content). */
  const write = (rel: string, content: string) => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), content);
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mneme-layers-'));
    write('tsconfig.json', JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true, verbatimModuleSyntax: true } }));
    write('package.json', JSON.stringify({ name: 'layers-fixture', type: 'module', dependencies: { 'better-sqlite3': '1.0.0', 'tiny-parser': '1.0.0' } }));
    write('node_modules/better-sqlite3/package.json', JSON.stringify({ name: 'better-sqlite3', version: '1.0.0', main: 'lib/index.js' }));
    write('node_modules/better-sqlite3/lib/index.js', 'module.exports = class Database {};\n');
    write('node_modules/tiny-parser/package.json', JSON.stringify({ name: 'tiny-parser', version: '1.0.0', main: 'index.js' }));
    write('node_modules/tiny-parser/index.js', 'exports.parse = (s) => s;\n');
    // Allowed: chat → features, eval → chat, web → type from chat, web → shared, shared → npm package,
    // wiring → sqlite/index.ts.
    write('src/shared/util.ts', "import { parse } from 'tiny-parser';\nexport const ONE = Number(parse('1'));\n");
    write('src/core/tokens.ts', "import { ONE } from '../shared/util.ts';\nexport const count = (s: string): number => s.length * ONE;\n");
    write('src/core/store/sqlite/index.ts', "import Database from 'better-sqlite3';\nexport const open = () => new Database();\n");
    write('src/core/store/sqlite/users.ts', "import { open } from './index.ts';\nexport const users = open;\n");
    write('src/features/types.ts', 'export interface Signals { weight: number }\n');
    write('src/chat/types.ts', "import type { Signals } from '../features/types.ts';\nexport interface Answer { signals: Signals }\n");
    write('src/chat/answer.ts', "import { count } from '../core/tokens.ts';\nexport const answer = (q: string): number => count(q);\n");
    write('src/eval/run.ts', "import { answer } from '../chat/answer.ts';\nexport const run = (): number => answer('q');\n");
    write('src/web/ok.ts', "import type { Answer } from '../chat/types.ts';\nimport { ONE } from '../shared/util.ts';\nexport const show = (a: Answer): number => a.signals.weight + ONE;\n");
    write('src/commands/serve.ts', "import { open } from '../core/store/sqlite/index.ts';\nexport const serve = open;\n");
    // Forbidden, one per rule.
    write('src/core/bad-core.ts', "import { answer } from '../chat/answer.ts';\nexport const bad = answer;\n");
    write('ingest/chunk.ts', "import { answer } from '../src/chat/answer.ts';\nexport const chunk = answer;\n");
    write('src/features/personalize.ts', "import type { Answer } from '../chat/types.ts';\nexport type A = Answer;\n");
    write('src/export/run.ts', "import { run } from '../eval/run.ts';\nexport const exp = run;\n");
    write('src/web/bad-web.ts', "import { answer } from '../chat/answer.ts';\nexport const bad = answer;\n");
    write('src/web/node-web.ts', "import { readFileSync } from 'node:fs';\nexport const r = readFileSync;\n");
    write('src/shared/bad-shared.ts', "import { count } from '../core/tokens.ts';\nexport const c = count;\n");
    write('src/shared/node-shared.ts', "import path from 'node:path';\nexport const j = path.join;\n");
    write('src/chat/cycle-a.ts', "import type { B } from './cycle-b.ts';\nexport interface A { b?: B }\n");
    write('src/chat/cycle-b.ts', "import type { A } from './cycle-a.ts';\nexport interface B { a?: A }\n");
    write('src/chat/log.ts', "import type Database from 'better-sqlite3';\nexport type Db = Database;\n");
    write('src/chat/feedback.ts', "import { users } from '../core/store/sqlite/users.ts';\nexport const f = users;\n");
    write('src/commands/doctor.ts', "import { users } from '../core/store/sqlite/users.ts';\nexport const d = users;\n");
    write('src/chat/run-cmd.ts', "import { serve } from '../commands/serve.ts';\nexport const s = serve;\n");
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports each forbidden import under its rule (each cycle once), and nothing that is allowed', async () => {
    const { violations } = await cruiseWithProjectRules(dir, CRUISED);
    const lines = violations.map(describeViolation).sort();
    expect(lines).toEqual(
      [
        'core-imports-no-pipeline: src/core/bad-core.ts → src/chat/answer.ts',
        'no-import-cycles: src/chat/cycle-a.ts → src/chat/cycle-b.ts → src/chat/cycle-a.ts',
        'only-entry-points-import-commands: src/chat/run-cmd.ts → src/commands/serve.ts',
        'only-store-imports-db-drivers: src/chat/log.ts → node_modules/better-sqlite3/lib/index.js',
        'only-wiring-imports-sqlite-engine: src/chat/feedback.ts → src/core/store/sqlite/users.ts',
        'pipeline-export-imports-no-other-pipeline: src/export/run.ts → src/eval/run.ts',
        'pipeline-features-imports-no-other-pipeline: src/features/personalize.ts → src/chat/types.ts',
        'pipeline-ingest-imports-no-other-pipeline: ingest/chunk.ts → src/chat/answer.ts',
        'browser-code-imports-no-node-builtins: src/shared/node-shared.ts → path',
        'browser-code-imports-no-node-builtins: src/web/node-web.ts → fs',
        'shared-imports-no-project-code: src/shared/bad-shared.ts → src/core/tokens.ts',
        'web-imports-only-types-from-server: src/web/bad-web.ts → src/chat/answer.ts',
        'wiring-imports-only-sqlite-entry: src/commands/doctor.ts → src/core/store/sqlite/users.ts',
      ].sort(),
    );
  });
});
