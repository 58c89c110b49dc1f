/**
 * Every SQL statement of the product lives under src/core/store/ (issue 11, item 1). This test parses
 * every .ts file of src/ and ingest/ outside that folder (TypeScript's parser, so comments and
 * strings that merely mention SQL are not matched) and lists file:line for:
 * - a call of `.prepare(...)` / `.prepare<...>(...)` or `.pragma(...)`;
 * - a call of `.exec(...)` whose argument is a string or template literal (or a const initialized
 *   with one in the same file) containing an SQL keyword; `.exec` on a regular expression (a regex
 *   literal, `new RegExp`, or a const holding one) is RegExp.prototype.exec and is not matched;
 * - an import (static, dynamic, require, `import('…')` type or re-export) of better-sqlite3 or of
 *   src/core/db.ts.
 * Tests and benches may use SQL to set up or probe; only product code is scanned.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const REPO_ROOT = path.join(import.meta.dirname, '../../..');
/** Folders of product code, relative to the repository root. */
const SCANNED_DIRS = ['src', 'ingest'];
/** The one folder allowed to hold SQL and import the driver. */
const STORE_DIR = path.join(REPO_ROOT, 'src/core/store');
/** The legacy database module that must no longer be imported (deleted at the end of issue 11). */
const LEGACY_DB_MODULE = path.join(REPO_ROOT, 'src/core/db.ts');
/** Database driver packages that only the store may import. */
const DB_DRIVERS = new Set(['better-sqlite3']);
/** A statement keyword that marks a literal as SQL. */
const SQL_KEYWORD = /\b(CREATE|DROP|INSERT|DELETE|UPDATE|SELECT|PRAGMA|BEGIN)\b/i;

/** One offending line. */
export interface SqlFinding {
  /** Path relative to the repository root, with forward slashes. */
  file: string;
  /** 1-based line. */
  line: number;
  what: string;
}

/** The text of a string-ish literal (template literals: their literal parts), or null. */
function literalText(node: ts.Node): string | null {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isTemplateExpression(node)) return [node.head.text, ...node.templateSpans.map((s) => s.literal.text)].join(' ');
  return null;
}

function isRegExpValue(node: ts.Expression): boolean {
  const inner = ts.isParenthesizedExpression(node) ? node.expression : node;
  if (inner.kind === ts.SyntaxKind.RegularExpressionLiteral) return true;
  return (ts.isNewExpression(inner) || ts.isCallExpression(inner)) && ts.isIdentifier(inner.expression) && inner.expression.text === 'RegExp';
}

/** Const initializers of the file by name (`const X = …` anywhere, `static readonly X = …` in classes). */
function collectInitializers(sf: ts.SourceFile): Map<string, ts.Expression> {
  const out = new Map<string, ts.Expression>();
  const visit = (node: ts.Node): void => {
    if ((ts.isVariableDeclaration(node) || ts.isPropertyDeclaration(node)) && node.initializer && (ts.isIdentifier(node.name) || ts.isPrivateIdentifier(node.name))) {
      out.set(node.name.text, node.initializer);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** The name a receiver or argument refers to (`x`, `this.x`, `Foo.x`), for a lookup in the file's initializers. */
function referencedName(node: ts.Expression): string | null {
  if (ts.isIdentifier(node)) return node.text;
  if (ts.isPropertyAccessExpression(node)) return node.name.text;
  return null;
}

/** The called member's name for `a.name(…)` and `a['name'](…)`, or null. */
function calledMember(call: ts.CallExpression): { name: string; receiver: ts.Expression } | null {
  const callee = call.expression;
  if (ts.isPropertyAccessExpression(callee)) return { name: callee.name.text, receiver: callee.expression };
  if (ts.isElementAccessExpression(callee) && ts.isStringLiteralLike(callee.argumentExpression)) {
    return { name: callee.argumentExpression.text, receiver: callee.expression };
  }
  return null;
}

/** The module a specifier names: a package name, or an absolute path for relative specifiers. */
function resolveSpecifier(fromFile: string, specifier: string): string {
  if (!specifier.startsWith('.')) return specifier.startsWith('node:') ? specifier : specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
  const abs = path.resolve(path.dirname(fromFile), specifier);
  return abs.replace(/\.(js|mjs)$/, '.ts').replace(/^(?!.*\.[cm]?[tj]s$)(.*)$/, '$1.ts');
}

function forbiddenImport(fromFile: string, specifier: string): string | null {
  const target = resolveSpecifier(fromFile, specifier);
  if (DB_DRIVERS.has(target)) return `imports ${specifier}`;
  if (target === LEGACY_DB_MODULE) return `imports src/core/db.ts (${specifier})`;
  return null;
}

/** Module specifiers of static/dynamic imports, requires, re-exports and `import('…')` types. */
function importedSpecifier(node: ts.Node): string | null {
  if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
    return node.moduleSpecifier.text;
  }
  if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
    return node.moduleReference.expression.text;
  }
  if (ts.isCallExpression(node) && node.arguments.length > 0 && ts.isStringLiteral(node.arguments[0] as ts.Expression)) {
    const isImport = node.expression.kind === ts.SyntaxKind.ImportKeyword;
    const isRequire = ts.isIdentifier(node.expression) && node.expression.text === 'require';
    if (isImport || isRequire) return (node.arguments[0] as ts.StringLiteral).text;
  }
  if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
    return node.argument.literal.text;
  }
  return null;
}

/** What is wrong with one call, or null. */
function checkCall(call: ts.CallExpression, initializers: Map<string, ts.Expression>): string | null {
  const member = calledMember(call);
  if (!member) return null;
  if (member.name === 'prepare') return '.prepare() of SQL';
  if (member.name === 'pragma') return '.pragma()';
  if (member.name !== 'exec') return null;
  const receiverName = referencedName(member.receiver);
  const receiverInit = receiverName === null ? undefined : initializers.get(receiverName);
  if (isRegExpValue(member.receiver) || (receiverInit !== undefined && isRegExpValue(receiverInit))) return null;
  const arg = call.arguments[0];
  if (arg === undefined) return null;
  const argName = referencedName(arg);
  const argInit = argName === null ? undefined : initializers.get(argName);
  const text = literalText(arg) ?? (argInit === undefined ? null : literalText(argInit));
  const keyword = text === null ? null : SQL_KEYWORD.exec(text);
  return keyword ? `.exec() of SQL (${keyword[1]?.toUpperCase()} …)` : null;
}

/**
 * Scans one file's source text.
 * @param absFile absolute path (used to resolve relative imports and in the findings)
 */
export function scanSource(absFile: string, source: string): SqlFinding[] {
  const sf = ts.createSourceFile(absFile, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const initializers = collectInitializers(sf);
  const file = path.relative(REPO_ROOT, absFile).split(path.sep).join('/');
  const findings: SqlFinding[] = [];
  const report = (node: ts.Node, what: string) => findings.push({ file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, what });
  const visit = (node: ts.Node): void => {
    const specifier = importedSpecifier(node);
    const bad = specifier === null ? null : forbiddenImport(absFile, specifier);
    if (bad) report(node, bad);
    if (ts.isCallExpression(node)) {
      const problem = checkCall(node, initializers);
      if (problem) report(node, problem);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return findings;
}

/** Every .ts file under `dir`, skipping `skipDir`. */
function tsFiles(dir: string, skipDir: string): string[] {
  if (dir === skipDir) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(full, skipDir);
    return entry.isFile() && /\.[cm]?ts$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

describe('no SQL outside src/core/store', () => {
  it('product code outside the store prepares, executes and imports no SQL', () => {
    const files = SCANNED_DIRS.flatMap((d) => tsFiles(path.join(REPO_ROOT, d), STORE_DIR));
    expect(files.length).toBeGreaterThan(50);
    const findings = files.flatMap((f) => scanSource(f, readFileSync(f, 'utf8')));
    const lines = findings.map((f) => `${f.file}:${f.line}: ${f.what}`);
    expect(lines, `SQL outside src/core/store (move it into a store method):\n${lines.join('\n')}`).toEqual([]);
  });
});

describe('the SQL scanner', () => {
  const at = (rel: string) => path.join(REPO_ROOT, rel);
  const scan = (source: string, rel = 'src/chat/example.ts') => scanSource(at(rel), source).map((f) => `${f.line}: ${f.what}`);

  it('finds prepare, pragma and SQL exec calls, typed or not, on any receiver', () => {
    const source = [
      "const a = db.prepare('SELECT 1').get();",
      'const b = this.db.prepare<[number], { id: number }>(`SELECT id FROM users WHERE id = ?`);',
      "db.pragma('journal_mode = WAL');",
      "db.exec('create table t (x)');",
      'db.exec(`DELETE FROM t WHERE x = ${1}`);',
      "const SCHEMA = 'BEGIN; INSERT INTO t VALUES (1); COMMIT';",
      'db.exec(SCHEMA);',
      "db['prepare']('UPDATE t SET x = 2');",
    ].join('\n');
    expect(scan(source)).toEqual([
      '1: .prepare() of SQL',
      '2: .prepare() of SQL',
      '3: .pragma()',
      '4: .exec() of SQL (CREATE …)',
      '5: .exec() of SQL (DELETE …)',
      '7: .exec() of SQL (BEGIN …)',
      '8: .prepare() of SQL',
    ]);
  });

  it('does not match RegExp exec, comments, or strings that merely mention SQL', () => {
    const source = [
      '// call db.prepare(sql) and db.exec("DELETE FROM t") in the store',
      "const m = /^(\\d+)$/.exec('SELECT 1');",
      'const RE = /update/i;',
      "const n = RE.exec('UPDATE t');",
      "const o = new RegExp('x').exec('DROP TABLE');",
      "const text = 'SELECT is a keyword';",
      'const p = re.exec(line);',
      "child.exec('ls -la');",
    ].join('\n');
    expect(scan(source)).toEqual([]);
  });

  it('finds every form of import of better-sqlite3 and of src/core/db.ts', () => {
    const source = [
      "import Database from 'better-sqlite3';",
      "import type { Database as Db } from 'better-sqlite3';",
      "import { openDb } from '../core/db.ts';",
      "export { nowIso } from '../core/db.ts';",
      "type D = import('../core/db.ts').Db;",
      "const m = await import('better-sqlite3');",
      "import { openSqliteStore } from '../core/store/sqlite/index.ts';",
      "import { dbPath } from '../core/db-path.ts';",
    ].join('\n');
    expect(scan(source)).toEqual([
      '1: imports better-sqlite3',
      '2: imports better-sqlite3',
      '3: imports src/core/db.ts (../core/db.ts)',
      '4: imports src/core/db.ts (../core/db.ts)',
      '5: imports src/core/db.ts (../core/db.ts)',
      '6: imports better-sqlite3',
    ]);
  });
});
