/** SQLite implementation of {@link PredictionStore} (every statement of this aggregate lives here). */
import type { PredictionStore } from '../predictions.ts';
import type { SqliteConnection } from './connection.ts';

export class SqlitePredictionStore implements PredictionStore {
  constructor(protected readonly c: SqliteConnection) {}
}
