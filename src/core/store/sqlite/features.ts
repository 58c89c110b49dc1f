/** SQLite implementation of {@link FeatureTableStore} (every statement of this aggregate lives here). */
import type { FeatureTableStore } from '../features.ts';
import type { SqliteConnection } from './connection.ts';

export class SqliteFeatureTableStore implements FeatureTableStore {
  constructor(protected readonly c: SqliteConnection) {}
}
