/** PostgreSQL implementation of {@link CollectionStore} (090_collection_acl.sql). */
import pg from 'pg';
import { ConflictError } from '../../errors.ts';
import type { CollectionAccess, CollectionRecord, CollectionRow, CollectionStore, CollectionVisibility, GrantRow, NewCollection } from '../collections.ts';
import { accessFromRows, collectionsFromRows } from '../collections.ts';
import type { PostgresConnection } from './connection.ts';

/** SQLSTATE of a unique-constraint violation. */
const PG_UNIQUE_VIOLATION = '23505';

const SQL_GRANTS = `SELECT g.collection AS collection, g.user_id AS user_id, u.name AS user_name, g.can_write AS can_write, g.granted_at AS granted_at
  FROM collection_grants g JOIN users u ON u.id = g.user_id`;
const SQL_ROWS = 'SELECT name, visibility, created_by, created_at FROM collections';

export class PostgresCollectionStore implements CollectionStore {
  constructor(private readonly c: PostgresConnection) {}

  async create(col: NewCollection): Promise<CollectionRecord> {
    try {
      await this.c.run('INSERT INTO collections (name, visibility, created_by, created_at) VALUES ($1, $2, $3, $4)', [col.name, col.visibility, col.createdBy, col.createdAt]);
    } catch (cause) {
      if (cause instanceof pg.DatabaseError && cause.code === PG_UNIQUE_VIOLATION) throw new ConflictError(`collection "${col.name}" already has access settings`, { cause });
      throw cause;
    }
    return { ...col, grants: [] };
  }

  async get(name: string): Promise<CollectionRecord | null> {
    const row = await this.c.one<CollectionRow>(`${SQL_ROWS} WHERE name = $1`, [name]);
    if (!row) return null;
    const grants = await this.c.rows<GrantRow>(`${SQL_GRANTS} WHERE g.collection = $1`, [name]);
    return collectionsFromRows([row], grants)[0] ?? null;
  }

  async list(): Promise<CollectionRecord[]> {
    return this.c.tx(async (q) => {
      const rows = await q.rows<CollectionRow>(`${SQL_ROWS} ORDER BY name COLLATE "C"`);
      return collectionsFromRows(rows, await q.rows<GrantRow>(SQL_GRANTS));
    });
  }

  async setVisibility(name: string, visibility: CollectionVisibility): Promise<boolean> {
    return (await this.c.run('UPDATE collections SET visibility = $1 WHERE name = $2', [visibility, name])) > 0;
  }

  async grant(name: string, userId: number, canWrite: boolean, at: string): Promise<boolean> {
    const n = await this.c.run(
      `INSERT INTO collection_grants (collection, user_id, can_write, granted_at)
       SELECT name, $2::bigint, $3::boolean, $4::timestamptz FROM collections WHERE name = $1
       ON CONFLICT (collection, user_id) DO UPDATE SET can_write = excluded.can_write, granted_at = excluded.granted_at`,
      [name, userId, canWrite, at],
    );
    return n > 0;
  }

  async revoke(name: string, userId: number): Promise<boolean> {
    return (await this.c.run('DELETE FROM collection_grants WHERE collection = $1 AND user_id = $2', [name, userId])) > 0;
  }

  async accessOf(userId: number): Promise<CollectionAccess> {
    const rows = await this.c.rows<{ name: string; visibility: CollectionVisibility; can_write: boolean | null }>(
      `SELECT c.name AS name, c.visibility AS visibility, g.can_write AS can_write
         FROM collections c LEFT JOIN collection_grants g ON g.collection = c.name AND g.user_id = $1
        WHERE c.visibility = 'private' OR g.user_id IS NOT NULL`,
      [userId],
    );
    return accessFromRows(rows);
  }
}
