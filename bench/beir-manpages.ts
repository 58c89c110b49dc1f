/**
 * Builds a public BEIR-layout retrieval set from the Linux man-pages project (Debian's `manpages-dev`,
 * sections 2 and 3: system calls and C library functions), a known-item set: each page's NAME line
 * gives a query (its description: "open and possibly create a file") and the page, NAME section
 * removed, is the document to find; pages sharing one description are all relevant to it.
 *
 *   cd /tmp && apt-get download manpages-dev && dpkg-deb -x manpages-dev_*.deb manpages
 *   node --import tsx bench/beir-manpages.ts /tmp/manpages/usr/share/man OUT_DIR [--sections 2,3]
 *   node bin/mneme.js eval --dataset OUT_DIR --mode bm25
 *
 * Pages are rendered with groff (`-man -Tutf8`, hyphenation off); alias pages (symlinks, `.so`) are skipped.
 * Writes OUT_DIR/corpus.jsonl, queries.jsonl and qrels/test.tsv; prints a JSON summary on stdout.
 * Deterministic for a given manpages-dev version.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { sections: { type: 'string', default: '2,3' } } });
const [manRoot, outDir] = positionals;
if (!manRoot || !outDir) throw new Error('usage: bench/beir-manpages.ts MAN_ROOT OUT_DIR [--sections 2,3]');
/** groff processes run at once (the machine's two cores). */
const RENDER_CONCURRENCY = 2;
/** Fewest words a description needs to be a query (one word says too little). */
const MIN_QUERY_WORDS = 2;

interface Page {
  id: string;
  names: string;
  description: string;
  text: string;
}

function render(source: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const groff = spawn('groff', ['-man', '-Tutf8', '-rHY=0', '-P-cbou'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    groff.stdout.on('data', (b: Buffer) => out.push(b));
    groff.on('error', reject);
    groff.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out).toString('utf8')) : reject(new Error(`groff exited ${code}`))));
    groff.stdin.end(source);
  });
}

/** The NAME line split into names and description, and the rest of the page without header and footer. */
function parsePage(id: string, rendered: string): Page | null {
  const lines = rendered.split('\n').map((l) => l.trimEnd());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  // First line: "open(2)  System Calls Manual  open(2)"; last: "Linux man-pages 6.03  …  open(2)".
  const body = lines.slice(1, -1);
  const at = body.findIndex((l) => l === 'NAME');
  if (at < 0) return null;
  let end = at + 1;
  while (end < body.length && body[end]!.trim() !== '') end++;
  const nameLine = body.slice(at + 1, end).map((l) => l.trim()).join(' ');
  const dash = nameLine.indexOf(' - ');
  if (dash < 0) return null;
  const description = nameLine.slice(dash + 3).trim();
  if (description.split(/\s+/).length < MIN_QUERY_WORDS) return null;
  const text = [...body.slice(0, at), ...body.slice(end)]
    .map((l) => l.trim())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
  return { id, names: nameLine.slice(0, dash).replace(/\s+/g, ' ').trim(), description, text };
}

async function main() {
  const files: Array<{ id: string; file: string }> = [];
  let aliases = 0;
  for (const section of values.sections!.split(',')) {
    const dir = path.join(manRoot!, `man${section.trim()}`);
    for (const f of fs.readdirSync(dir).sort()) {
      if (!f.endsWith('.gz')) continue;
      // Debian installs a page's other names as symlinks to it: one document per page.
      if (fs.lstatSync(path.join(dir, f)).isSymbolicLink()) aliases++;
      else files.push({ id: f.replace(/\.gz$/, ''), file: path.join(dir, f) });
    }
  }
  const pages: Page[] = [];
  let unparsed = 0;
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const { id, file } = files[next++]!;
      const source = zlib.gunzipSync(fs.readFileSync(file));
      if (/^\.so\s/m.test(source.toString('utf8').split('\n').filter((l) => !l.startsWith('.\\"') && l.trim() !== '').slice(0, 1).join('\n'))) {
        aliases++;
        continue;
      }
      const page = parsePage(id, await render(source));
      if (page) pages.push(page);
      else unparsed++;
    }
  };
  await Promise.all(Array.from({ length: RENDER_CONCURRENCY }, worker));
  pages.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const byDescription = new Map<string, string[]>();
  for (const p of pages) {
    const key = p.description.toLowerCase();
    byDescription.set(key, [...(byDescription.get(key) ?? []), p.id]);
  }
  fs.mkdirSync(path.join(outDir!, 'qrels'), { recursive: true });
  fs.writeFileSync(path.join(outDir!, 'corpus.jsonl'), pages.map((p) => JSON.stringify({ _id: p.id, title: p.names, text: p.text })).join('\n') + '\n');
  fs.writeFileSync(path.join(outDir!, 'queries.jsonl'), pages.map((p) => JSON.stringify({ _id: p.id, text: p.description })).join('\n') + '\n');
  const qrels = ['query-id\tcorpus-id\tscore'];
  for (const p of pages) for (const doc of byDescription.get(p.description.toLowerCase())!) qrels.push(`${p.id}\t${doc}\t1`);
  fs.writeFileSync(path.join(outDir!, 'qrels', 'test.tsv'), qrels.join('\n') + '\n');
  process.stdout.write(`${JSON.stringify({ pages: pages.length, queries: pages.length, qrels: qrels.length - 1, aliases_skipped: aliases, unparsed, out: path.resolve(outDir!) })}\n`);
}

await main();
