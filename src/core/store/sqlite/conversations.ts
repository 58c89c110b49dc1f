/** SQLite implementation of {@link ConversationStore} (every statement of this aggregate lives here). */
import type { ConversationStore } from '../conversations.ts';
import type { SqliteConnection } from './connection.ts';

export class SqliteConversationStore implements ConversationStore {
  constructor(protected readonly c: SqliteConnection) {}
}
