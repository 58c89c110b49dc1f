/** PostgreSQL implementation of {@link CollectionStore} (090_collection_acl.sql, 100_groups.sql). */
import pg from 'pg';
import { ConflictError } from '../../errors.ts';
import type { CollectionAccess, CollectionRecord, CollectionRow, CollectionStore, CollectionVisibility, GrantRow, GroupGrantRow, GroupRecord, GroupRow, MemberRow, NewCollection } from '../collections.ts';
import { accessFromRows, collectionsFromRows, groupsFromRows } from '../collections.ts';
import type { PostgresConnection } from './connection.ts';

/** SQLSTATE of a unique-constraint violation. */
const PG_UNIQUE_VIOLATION = '23505';

const SQL_GRANTS = `SELECT g.collection AS collection, g.user_id AS user_id, u.name AS user_name, g.can_write AS can_write, g.granted_at AS granted_at
  FROM collection_grants g JOIN users u ON u.id = g.user_id`;
const SQL_ROWS = 'SELECT name, visibility, created_by, created_at FROM collections';
const SQL_GROUP_GRANTS = 'SELECT collection, group_name, can_write, granted_at FROM collection_group_grants';
const SQL_MEMBERS = `SELECT m.group_name AS group_name, m.user_id AS user_id, u.name AS user_name, m.added_at AS added_at
  FROM group_members m JOIN users u ON u.id = m.user_id`;

export class PostgresCollectionStore implements CollectionStore {
  constructor(private readonly c: PostgresConnection) {}

  async create(col: NewCollection): Promise<CollectionRecord> {
    try {
      await this.c.run('INSERT INTO collections (name, visibility, created_by, created_at) VALUES ($1, $2, $3, $4)', [col.name, col.visibility, col.createdBy, col.createdAt]);
    } catch (cause) {
      if (cause instanceof pg.DatabaseError && cause.code === PG_UNIQUE_VIOLATION) throw new ConflictError(`collection "${col.name}" already has access settings`, { cause });
      throw cause;
    }
    return { ...col, grants: [], groupGrants: [] };
  }

  async get(name: string): Promise<CollectionRecord | null> {
    const row = await this.c.one<CollectionRow>(`${SQL_ROWS} WHERE name = $1`, [name]);
    if (!row) return null;
    const grants = await this.c.rows<GrantRow>(`${SQL_GRANTS} WHERE g.collection = $1`, [name]);
    const groupGrants = await this.c.rows<GroupGrantRow>(`${SQL_GROUP_GRANTS} WHERE collection = $1`, [name]);
    return collectionsFromRows([row], grants, groupGrants)[0] ?? null;
  }

  async list(): Promise<CollectionRecord[]> {
    return this.c.tx(async (q) => {
      const rows = await q.rows<CollectionRow>(`${SQL_ROWS} ORDER BY name COLLATE "C"`);
      return collectionsFromRows(rows, await q.rows<GrantRow>(SQL_GRANTS), await q.rows<GroupGrantRow>(SQL_GROUP_GRANTS));
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

  async grantGroup(name: string, group: string, canWrite: boolean, at: string): Promise<boolean> {
    const n = await this.c.run(
      `INSERT INTO collection_group_grants (collection, group_name, can_write, granted_at)
       SELECT c.name, g.name, $3::boolean, $4::timestamptz FROM collections c, user_groups g WHERE c.name = $1 AND g.name = $2
       ON CONFLICT (collection, group_name) DO UPDATE SET can_write = excluded.can_write, granted_at = excluded.granted_at`,
      [name, group, canWrite, at],
    );
    return n > 0;
  }

  async revokeGroup(name: string, group: string): Promise<boolean> {
    return (await this.c.run('DELETE FROM collection_group_grants WHERE collection = $1 AND group_name = $2', [name, group])) > 0;
  }

  async createGroup(name: string, at: string): Promise<GroupRecord> {
    try {
      await this.c.run('INSERT INTO user_groups (name, created_at) VALUES ($1, $2)', [name, at]);
    } catch (cause) {
      if (cause instanceof pg.DatabaseError && cause.code === PG_UNIQUE_VIOLATION) throw new ConflictError(`group "${name}" exists`, { cause });
      throw cause;
    }
    return { name, createdAt: at, members: [], grants: [] };
  }

  async deleteGroup(name: string): Promise<boolean> {
    return (await this.c.run('DELETE FROM user_groups WHERE name = $1', [name])) > 0;
  }

  async listGroups(): Promise<GroupRecord[]> {
    return this.c.tx(async (q) =>
      groupsFromRows(
        await q.rows<GroupRow>('SELECT name, created_at FROM user_groups ORDER BY name COLLATE "C"'),
        await q.rows<MemberRow>(SQL_MEMBERS),
        await q.rows<GroupGrantRow>(SQL_GROUP_GRANTS),
      ),
    );
  }

  async addMember(group: string, userId: number, at: string): Promise<boolean> {
    if (!(await this.c.one<{ name: string }>('SELECT name FROM user_groups WHERE name = $1', [group]))) return false;
    await this.c.run(
      `INSERT INTO group_members (group_name, user_id, added_at) SELECT name, $2::bigint, $3::timestamptz FROM user_groups WHERE name = $1
       ON CONFLICT (group_name, user_id) DO NOTHING`,
      [group, userId, at],
    );
    return true;
  }

  async removeMember(group: string, userId: number): Promise<boolean> {
    return (await this.c.run('DELETE FROM group_members WHERE group_name = $1 AND user_id = $2', [group, userId])) > 0;
  }

  async accessOf(userId: number): Promise<CollectionAccess> {
    // One row per private collection and per granted collection; can_write: the strongest of the
    // user's own grant and their groups' grants (null: no grant at all).
    const rows = await this.c.rows<{ name: string; visibility: CollectionVisibility; can_write: boolean | null }>(
      `SELECT c.name AS name, c.visibility AS visibility, a.can_write AS can_write
         FROM collections c LEFT JOIN (
           SELECT collection, bool_or(can_write) AS can_write FROM (
             SELECT collection, can_write FROM collection_grants WHERE user_id = $1
             UNION ALL
             SELECT gg.collection, gg.can_write FROM collection_group_grants gg
               JOIN group_members m ON m.group_name = gg.group_name WHERE m.user_id = $1
           ) x GROUP BY collection
         ) a ON a.collection = c.name
        WHERE c.visibility = 'private' OR a.can_write IS NOT NULL`,
      [userId],
    );
    return accessFromRows(rows);
  }
}
