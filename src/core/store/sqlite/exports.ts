/** SQLite implementation of {@link ExportSource} (every statement of this aggregate lives here). */
import type { ExportSource } from '../exports.ts';
import type { SqliteConnection } from './connection.ts';

export class SqliteExportSource implements ExportSource {
  constructor(protected readonly c: SqliteConnection) {}
}
