/** SQLite implementation of {@link MonitoringStore} (every statement of this aggregate lives here). */
import type { MonitoringStore } from '../monitoring.ts';
import type { SqliteConnection } from './connection.ts';

export class SqliteMonitoringStore implements MonitoringStore {
  constructor(protected readonly c: SqliteConnection) {}
}
