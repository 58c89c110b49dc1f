// Layering rules of mneme (issue 11, item 7), checked by test/unit/layering.test.ts on every `npm test`
// and by `npm run lint:layers` (dependency-cruiser's CLI, same file).
//
// Layers, bottom to top:
//   src/shared/   code that runs both in Node and in the browser (no other project code, no Node built-ins)
//   src/core/     configuration, errors, models, indexes and the data layer (src/core/store/)
//   pipelines     ingest/, src/chat/, src/features/, src/export/, src/eval/
//   entry points  src/commands/, src/cli.ts (wire pipelines together)
//   src/web/      browser code: its own files, src/shared/, and *types* from the server
// A violation is fixed by moving the shared piece down a layer, never by loosening a rule here.

/** The pipelines, as path regexes relative to the repository root. */
const INGEST = '^ingest/';
const CHAT = '^src/chat/';
const FEATURES = '^src/features/';
const EXPORT = '^src/export/';
const EVAL = '^src/eval/';
const PIPELINES = [INGEST, CHAT, FEATURES, EXPORT, EVAL];
const ENTRY_POINTS = ['^src/commands/', '^src/cli\\.ts$'];
const WEB = '^src/web/';
const SHARED = '^src/shared/';
const STORE = '^src/core/store/';
const SQLITE_ENGINE = '^src/core/store/sqlite/';
/** The only module outside the store that may import the SQLite engine: the one that opens a store. */
const SQLITE_ENTRY = '^src/core/store/sqlite/index\\.ts$';
/** The wiring points that open the store (and so may import SQLITE_ENTRY). */
const STORE_WIRING = ['^src/core/deps\\.ts$', '^src/chat/http/wiring\\.ts$', '^src/commands/[^/]+\\.ts$'];
/** Database drivers, resolved (node_modules/...) or not installed (bare name). */
const DB_DRIVERS = ['(^|/)node_modules/(@types/)?(better-sqlite3|pg)/', '^(better-sqlite3|pg)$'];

/**
 * One rule per pipeline: it imports none of the other pipelines except the ones listed.
 * @param {string} name rule name suffix
 * @param {string} from the pipeline's path regex
 * @param {string[]} allowed pipelines it may import
 * @returns {import('dependency-cruiser').IForbiddenRuleType}
 */
function pipelineRule(name, from, allowed) {
  const others = PIPELINES.filter((p) => p !== from && !allowed.includes(p));
  return {
    name: `pipeline-${name}-imports-no-other-pipeline`,
    comment: `${from} must not import ${others.join(', ')}` +
      (allowed.length > 0 ? ` (only ${allowed.join(', ')} is allowed)` : '') +
      ': move the shared piece down to src/core (or src/shared)',
    severity: 'error',
    from: { path: from },
    to: { path: others },
  };
}

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'core-imports-no-pipeline',
      comment: 'src/core is the bottom layer: it imports no pipeline, entry point or browser code; ' +
        'move the shared piece into src/core',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: [...PIPELINES, ...ENTRY_POINTS, WEB] },
    },
    pipelineRule('ingest', INGEST, []),
    pipelineRule('chat', CHAT, [FEATURES]),
    pipelineRule('features', FEATURES, []),
    pipelineRule('export', EXPORT, []),
    pipelineRule('eval', EVAL, [CHAT]),
    {
      name: 'only-entry-points-import-commands',
      comment: 'src/commands are entry points: only src/cli.ts and other commands import them',
      severity: 'error',
      from: { pathNot: ENTRY_POINTS },
      to: { path: '^src/commands/' },
    },
    {
      name: 'web-imports-only-types-from-server',
      comment: 'src/web is browser code: it may import values only from src/web and src/shared, and ' +
        'only `import type` from the server (move shared runtime code to src/shared)',
      severity: 'error',
      from: { path: WEB, pathNot: '^src/web/build\\.ts$' },
      to: { path: '^(src|ingest)/', pathNot: [WEB, SHARED], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'shared-imports-no-project-code',
      comment: 'src/shared runs in Node and in the browser: it imports no project code outside src/shared ' +
        '(npm packages that run in both are fine)',
      severity: 'error',
      from: { path: SHARED },
      to: { path: '^(src|ingest)/', pathNot: SHARED },
    },
    {
      name: 'browser-code-imports-no-node-builtins',
      comment: 'src/web (but its build script) and src/shared run in the browser: no Node built-in modules',
      severity: 'error',
      from: { path: [WEB, SHARED], pathNot: '^src/web/build\\.ts$' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'no-import-cycles',
      comment: 'no import cycles (type-only imports included): move the shared piece down',
      severity: 'error',
      from: { path: '^(src|ingest)/' },
      to: { circular: true },
    },
    {
      name: 'only-store-imports-db-drivers',
      comment: 'database drivers (better-sqlite3, pg) and their types are imported only under src/core/store/',
      severity: 'error',
      from: { path: '^(src|ingest)/', pathNot: STORE },
      to: { path: DB_DRIVERS },
    },
    {
      name: 'only-wiring-imports-sqlite-engine',
      comment: 'outside src/core/store only the wiring points (src/core/deps.ts, src/chat/http/wiring.ts, ' +
        'src/commands/*.ts) import the SQLite engine, and only src/core/store/sqlite/index.ts',
      severity: 'error',
      from: { path: '^(src|ingest)/', pathNot: [STORE, ...STORE_WIRING] },
      to: { path: SQLITE_ENGINE },
    },
    {
      name: 'wiring-imports-only-sqlite-entry',
      comment: 'wiring points open the store through src/core/store/sqlite/index.ts only',
      severity: 'error',
      from: { path: STORE_WIRING },
      to: { path: SQLITE_ENGINE, pathNot: SQLITE_ENTRY },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: undefined,
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.mts', '.js', '.mjs', '.cjs', '.json', '.d.ts'],
    },
    skipAnalysisNotInRules: false,
  },
};
