/** SQLite implementation of {@link CollectionStore} (090_collection_acl.sql). */
import { ConflictError } from '../../errors.ts';
import type { CollectionAccess, CollectionRecord, CollectionRow, CollectionStore, CollectionVisibility, GrantRow, NewCollection } from '../collections.ts';
import { accessFromRows, collectionsFromRows } from '../collections.ts';
import type { SqliteConnection } from './connection.ts';
import { sqliteCode } from './connection.ts';

const SQL_GRANTS = `SELECT g.collection AS collection, g.user_id AS user_id, u.name AS user_name, g.can_write AS can_write, g.granted_at AS granted_at
  FROM collection_grants g JOIN users u ON u.id = g.user_id`;
const SQL_ACCESS = `SELECT c.name AS name, c.visibility AS visibility, g.can_write AS can_write
  FROM collections c LEFT JOIN collection_grants g ON g.collection = c.name AND g.user_id = ?
  WHERE c.visibility = 'private' OR g.user_id IS NOT NULL`;

export class SqliteCollectionStore implements CollectionStore {
  constructor(private readonly c: SqliteConnection) {}

  async create(col: NewCollection): Promise<CollectionRecord> {
    try {
      await this.c.write(() =>
        this.c
          .stmt('INSERT INTO collections (name, visibility, created_by, created_at) VALUES (?, ?, ?, ?)')
          .run(col.name, col.visibility, col.createdBy, col.createdAt),
      );
    } catch (cause) {
      if (sqliteCode(cause) === 'SQLITE_CONSTRAINT_PRIMARYKEY' || sqliteCode(cause) === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new ConflictError(`collection "${col.name}" already has access settings`, { cause });
      }
      throw cause;
    }
    return { ...col, grants: [] };
  }

  async get(name: string): Promise<CollectionRecord | null> {
    const row = this.c.stmt<[string], CollectionRow>('SELECT name, visibility, created_by, created_at FROM collections WHERE name = ?').get(name);
    if (!row) return null;
    const grants = this.c.stmt<[string], GrantRow>(`${SQL_GRANTS} WHERE g.collection = ?`).all(name);
    return collectionsFromRows([row], grants)[0] ?? null;
  }

  async list(): Promise<CollectionRecord[]> {
    return this.c.read(() => {
      const rows = this.c.stmt<[], CollectionRow>('SELECT name, visibility, created_by, created_at FROM collections ORDER BY name').all();
      return collectionsFromRows(rows, this.c.stmt<[], GrantRow>(SQL_GRANTS).all());
    });
  }

  async setVisibility(name: string, visibility: CollectionVisibility): Promise<boolean> {
    return this.c.write(() => this.c.stmt('UPDATE collections SET visibility = ? WHERE name = ?').run(visibility, name).changes > 0);
  }

  async grant(name: string, userId: number, canWrite: boolean, at: string): Promise<boolean> {
    return this.c.write(() => {
      if (!this.c.stmt<[string], number>('SELECT 1 FROM collections WHERE name = ?').pluck().get(name)) return false;
      this.c
        .stmt(
          `INSERT INTO collection_grants (collection, user_id, can_write, granted_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (collection, user_id) DO UPDATE SET can_write = excluded.can_write, granted_at = excluded.granted_at`,
        )
        .run(name, userId, canWrite ? 1 : 0, at);
      return true;
    });
  }

  async revoke(name: string, userId: number): Promise<boolean> {
    return this.c.write(() => this.c.stmt('DELETE FROM collection_grants WHERE collection = ? AND user_id = ?').run(name, userId).changes > 0);
  }

  async accessOf(userId: number): Promise<CollectionAccess> {
    return accessFromRows(this.c.stmt<[number], { name: string; visibility: CollectionVisibility; can_write: number | null }>(SQL_ACCESS).all(userId));
  }
}
