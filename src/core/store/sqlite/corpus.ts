/** SQLite implementation of {@link CorpusStore} (every statement of this aggregate lives here). */
import type { CorpusStore } from '../corpus.ts';
import type { SqliteConnection } from './connection.ts';

export class SqliteCorpusStore implements CorpusStore {
  constructor(protected readonly c: SqliteConnection) {}
}
