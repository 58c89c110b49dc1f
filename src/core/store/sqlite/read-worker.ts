/**
 * Worker thread of {@link SqliteReader}: its own read-only connection to the database file and a
 * SqliteCorpusStore on it, answering the full-text searches a server sends here. Whatever one query
 * costs (FTS5 scores every chunk matching a common term: hundreds of ms on a large corpus), it is
 * spent on this thread, not on the server's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteConnection } from './connection.ts';
import { SqliteCorpusStore } from './corpus.ts';
import type { ReaderMethod, ReaderRequest, ReaderReply } from './reader.ts';

const { file, ftsNative } = (workerData as { data: { file: string; ftsNative: boolean } }).data;
const conn = new SqliteConnection(file, { readonly: true, ftsNative });
const corpus = new SqliteCorpusStore(conn);

const methods: Record<ReaderMethod, (...args: never[]) => Promise<unknown>> = {
  searchText: (...a: Parameters<SqliteCorpusStore['searchText']>) => corpus.searchText(...a),
  searchDocuments: (...a: Parameters<SqliteCorpusStore['searchDocuments']>) => corpus.searchDocuments(...a),
  bestChunks: (...a: Parameters<SqliteCorpusStore['bestChunks']>) => corpus.bestChunks(...a),
  lexicalCandidates: (...a: Parameters<SqliteCorpusStore['lexicalCandidates']>) => corpus.lexicalCandidates(...a),
  // The BM25 split's counters of the searches run here (benchmarks read them).
  searchPaths: async () => ({ chunks: corpus.bm25Paths, documents: corpus.bm25DocumentPaths }),
};

parentPort!.on('message', (msg: ReaderRequest | { type: 'close' }) => {
  if ('type' in msg) {
    conn.close();
    parentPort!.close();
    return;
  }
  const fn = methods[msg.method] as (...args: unknown[]) => Promise<unknown>;
  fn(...msg.args).then(
    (result) => parentPort!.postMessage({ id: msg.id, result } satisfies ReaderReply),
    (err: unknown) => parentPort!.postMessage({ id: msg.id, error: (err as Error).message ?? String(err) } satisfies ReaderReply),
  );
});
// Before taking searches (the server's own connection answers them until then): row sizes in memory.
corpus.warmFullText();
parentPort!.postMessage({ ready: true });
