/** SQLite implementation of {@link UserStore} (every statement of this aggregate lives here). */
import type { UserStore } from '../users.ts';
import type { SqliteConnection } from './connection.ts';

export class SqliteUserStore implements UserStore {
  constructor(protected readonly c: SqliteConnection) {}
}
