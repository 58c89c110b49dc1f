/** SQLite implementation of {@link CollectionStore} (090_collection_acl.sql, 100_groups.sql). */
import { ConflictError } from '../../errors.ts';
import type { CollectionAccess, CollectionRecord, CollectionRow, CollectionStore, CollectionVisibility, GrantRow, GroupGrantRow, GroupRecord, GroupRow, MemberRow, NewCollection } from '../collections.ts';
import { accessFromRows, collectionsFromRows, groupsFromRows } from '../collections.ts';
import type { SqliteConnection } from './connection.ts';
import { sqliteCode } from './connection.ts';

const SQL_GRANTS = `SELECT g.collection AS collection, g.user_id AS user_id, u.name AS user_name, g.can_write AS can_write, g.granted_at AS granted_at
  FROM collection_grants g JOIN users u ON u.id = g.user_id`;
const SQL_GROUP_GRANTS = 'SELECT collection, group_name, can_write, granted_at FROM collection_group_grants';
const SQL_MEMBERS = `SELECT m.group_name AS group_name, m.user_id AS user_id, u.name AS user_name, m.added_at AS added_at
  FROM group_members m JOIN users u ON u.id = m.user_id`;
// One row per private collection and per granted collection; can_write: the strongest of the
// user's own grant and their groups' grants (null: no grant at all).
const SQL_ACCESS = `SELECT c.name AS name, c.visibility AS visibility, a.can_write AS can_write
  FROM collections c LEFT JOIN (
    SELECT collection, max(can_write) AS can_write FROM (
      SELECT collection, can_write FROM collection_grants WHERE user_id = @user
      UNION ALL
      SELECT gg.collection, gg.can_write FROM collection_group_grants gg
        JOIN group_members m ON m.group_name = gg.group_name WHERE m.user_id = @user
    ) GROUP BY collection
  ) a ON a.collection = c.name
  WHERE c.visibility = 'private' OR a.can_write IS NOT NULL`;

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
    return { ...col, grants: [], groupGrants: [] };
  }

  async get(name: string): Promise<CollectionRecord | null> {
    const row = this.c.stmt<[string], CollectionRow>('SELECT name, visibility, created_by, created_at FROM collections WHERE name = ?').get(name);
    if (!row) return null;
    const grants = this.c.stmt<[string], GrantRow>(`${SQL_GRANTS} WHERE g.collection = ?`).all(name);
    const groupGrants = this.c.stmt<[string], GroupGrantRow>(`${SQL_GROUP_GRANTS} WHERE collection = ?`).all(name);
    return collectionsFromRows([row], grants, groupGrants)[0] ?? null;
  }

  async list(): Promise<CollectionRecord[]> {
    return this.c.read(() => {
      const rows = this.c.stmt<[], CollectionRow>('SELECT name, visibility, created_by, created_at FROM collections ORDER BY name').all();
      return collectionsFromRows(rows, this.c.stmt<[], GrantRow>(SQL_GRANTS).all(), this.c.stmt<[], GroupGrantRow>(SQL_GROUP_GRANTS).all());
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

  async grantGroup(name: string, group: string, canWrite: boolean, at: string): Promise<boolean> {
    return this.c.write(() => {
      if (!this.c.stmt<[string], number>('SELECT 1 FROM collections WHERE name = ?').pluck().get(name)) return false;
      if (!this.c.stmt<[string], number>('SELECT 1 FROM user_groups WHERE name = ?').pluck().get(group)) return false;
      this.c
        .stmt(
          `INSERT INTO collection_group_grants (collection, group_name, can_write, granted_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (collection, group_name) DO UPDATE SET can_write = excluded.can_write, granted_at = excluded.granted_at`,
        )
        .run(name, group, canWrite ? 1 : 0, at);
      return true;
    });
  }

  async revokeGroup(name: string, group: string): Promise<boolean> {
    return this.c.write(() => this.c.stmt('DELETE FROM collection_group_grants WHERE collection = ? AND group_name = ?').run(name, group).changes > 0);
  }

  async createGroup(name: string, at: string): Promise<GroupRecord> {
    try {
      await this.c.write(() => this.c.stmt('INSERT INTO user_groups (name, created_at) VALUES (?, ?)').run(name, at));
    } catch (cause) {
      if (sqliteCode(cause) === 'SQLITE_CONSTRAINT_PRIMARYKEY' || sqliteCode(cause) === 'SQLITE_CONSTRAINT_UNIQUE') throw new ConflictError(`group "${name}" exists`, { cause });
      throw cause;
    }
    return { name, createdAt: at, members: [], grants: [] };
  }

  async deleteGroup(name: string): Promise<boolean> {
    return this.c.write(() => this.c.stmt('DELETE FROM user_groups WHERE name = ?').run(name).changes > 0);
  }

  async listGroups(): Promise<GroupRecord[]> {
    return this.c.read(() =>
      groupsFromRows(
        this.c.stmt<[], GroupRow>('SELECT name, created_at FROM user_groups ORDER BY name').all(),
        this.c.stmt<[], MemberRow>(SQL_MEMBERS).all(),
        this.c.stmt<[], GroupGrantRow>(SQL_GROUP_GRANTS).all(),
      ),
    );
  }

  async addMember(group: string, userId: number, at: string): Promise<boolean> {
    return this.c.write(() => {
      if (!this.c.stmt<[string], number>('SELECT 1 FROM user_groups WHERE name = ?').pluck().get(group)) return false;
      this.c.stmt('INSERT INTO group_members (group_name, user_id, added_at) VALUES (?, ?, ?) ON CONFLICT (group_name, user_id) DO NOTHING').run(group, userId, at);
      return true;
    });
  }

  async removeMember(group: string, userId: number): Promise<boolean> {
    return this.c.write(() => this.c.stmt('DELETE FROM group_members WHERE group_name = ? AND user_id = ?').run(group, userId).changes > 0);
  }

  async accessOf(userId: number): Promise<CollectionAccess> {
    return accessFromRows(this.c.stmt<{ user: number }, { name: string; visibility: CollectionVisibility; can_write: number | null }>(SQL_ACCESS).all({ user: userId }));
  }
}
