/*
** mneme_fts: an SQLite loadable extension adding one FTS5 auxiliary function, mneme_bm25().
**
**   mneme_bm25(fts_table, w_0, ..., w_{C-1}, dfs [, sizes])
**
** is FTS5's bm25(fts_table, w_0, ..., w_{C-1}) (same k1 = 1.2, b = 0.75, same clamped IDF, same
** arithmetic in the same order, so the same double) except for where the phrases' document
** frequencies come from. bm25() counts them at the start of every statement by walking each
** phrase's whole posting list (xQueryPhrase); a search that runs several statements for one query
** (mneme's pair cover, one best-chunk MATCH per listed document) pays that walk again in each.
** Here `dfs` gives them: the number of rows holding each phrase of the MATCH expression, in the
** order the phrases appear in it, as decimal integers separated by commas ("812,40213,7"). The
** caller counts each once (and caches it while the table is unchanged) with
**
**   mneme_phrase_rows(fts_table)
**
** which returns that string for the MATCH of its statement, counted as bm25() counts.
**
** With `dfs` NULL the function counts the frequencies itself, exactly as bm25() does.
**
** `sizes` (optional, a name) keeps each row's size in tokens in memory under that name, per
** connection, once read: bm25() reads it from the table's %_docsize b-tree for every row it scores,
** which was ~85 % of the scoring cost at 1M rows (perf). Only for a table whose rowids are never
** reused and whose rows are never rewritten (mneme's chunks_fts: one row per chunk id, and chunk ids
** are AUTOINCREMENT), since a size once read is kept for the connection's life. Up to
** SIZE_CACHE_MAX_ROWID rowids (2 bytes each); larger rowids are read each time.
**
** Errors (raised as SQL errors): C + 1 or C + 2 trailing arguments expected; a `dfs` that does not
** hold exactly one non-negative integer per phrase.
**
** Built by scripts/fts-native.mjs (mneme's postinstall) against the SQLite headers better-sqlite3
** ships; loaded per connection by src/core/store/sqlite/fts-native.ts.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct SizeCache SizeCache;
typedef struct Bm25Data Bm25Data;
struct Bm25Data {
  int nPhrase;        /* Phrases in the MATCH expression */
  double avgdl;       /* Average row size, in tokens */
  double *aIDF;       /* IDF of each phrase */
  double *aFreq;      /* Scratch: weighted frequency of each phrase in the current row */
  SizeCache *pSizes;  /* The `sizes` cache named by the statement (NULL: none) */
};

/* Row sizes kept under one name (see `sizes` above): a[rowid] = tokens; 0 = not read yet or
** not cacheable (0 tokens, or more than 65,534), in which case it is read each time. */
#define SIZE_CACHE_MAX_ROWID ((sqlite3_int64)1 << 26)
struct SizeCache {
  char *zName;
  sqlite3_int64 n;          /* Entries allocated in a[] */
  unsigned short *a;
  SizeCache *pNext;
};
/* Per connection (the user data of its functions). */
typedef struct ExtState ExtState;
struct ExtState {
  SizeCache *pCaches;
};

static void extStateFree(void *p){
  ExtState *st = (ExtState*)p;
  while( st->pCaches ){
    SizeCache *c = st->pCaches;
    st->pCaches = c->pNext;
    sqlite3_free(c->zName);
    sqlite3_free(c->a);
    sqlite3_free(c);
  }
  sqlite3_free(st);
}

/* The cache named zName (made on first use); NULL when out of memory. */
static SizeCache *sizeCache(ExtState *st, const char *zName){
  SizeCache *c;
  for(c=st->pCaches; c; c=c->pNext){
    if( strcmp(c->zName, zName)==0 ) return c;
  }
  c = (SizeCache*)sqlite3_malloc(sizeof(SizeCache));
  if( c==0 ) return 0;
  memset(c, 0, sizeof(SizeCache));
  c->zName = sqlite3_mprintf("%s", zName);
  if( c->zName==0 ){ sqlite3_free(c); return 0; }
  c->pNext = st->pCaches;
  st->pCaches = c;
  return c;
}

/* Makes c->a hold rowid iRow (zero-filled growth); 0 when out of memory or past the cap. */
static int sizeCacheReserve(SizeCache *c, sqlite3_int64 iRow){
  sqlite3_int64 n;
  unsigned short *a;
  if( iRow<=0 || iRow>=SIZE_CACHE_MAX_ROWID ) return 0;
  if( iRow<c->n ) return 1;
  n = c->n ? c->n : 1024;
  while( n<=iRow ) n *= 2;
  if( n>SIZE_CACHE_MAX_ROWID ) n = SIZE_CACHE_MAX_ROWID;
  a = (unsigned short*)sqlite3_realloc64(c->a, (sqlite3_uint64)n * sizeof(unsigned short));
  if( a==0 ) return 0;
  memset(&a[c->n], 0, (size_t)(n - c->n) * sizeof(unsigned short));
  c->a = a;
  c->n = n;
  return 1;
}

/* The current row's size in tokens (all columns), from `c` when it holds it (c may be NULL). */
static int rowSize(const Fts5ExtensionApi *pApi, Fts5Context *pFts, SizeCache *c, int *pnTok){
  sqlite3_int64 iRow = pApi->xRowid(pFts);
  int rc;
  if( c==0 || iRow<=0 || iRow>=SIZE_CACHE_MAX_ROWID ) return pApi->xColumnSize(pFts, -1, pnTok);
  if( iRow<c->n && c->a[iRow]!=0 ){
    *pnTok = c->a[iRow];
    return SQLITE_OK;
  }
  rc = pApi->xColumnSize(pFts, -1, pnTok);
  if( rc!=SQLITE_OK ) return rc;
  /* No memory for the cache: the size read is still right. */
  if( !sizeCacheReserve(c, iRow) ) return SQLITE_OK;
  if( *pnTok>0 && *pnTok<0xFFFF ) c->a[iRow] = (unsigned short)*pnTok;
  return SQLITE_OK;
}

static int countCb(const Fts5ExtensionApi *pApi, Fts5Context *pFts, void *pUserData){
  (void)pApi; (void)pFts;
  (*(sqlite3_int64*)pUserData)++;
  return SQLITE_OK;
}

/* FTS5's IDF (fts5_aux.c): log((N - n + 0.5) / (n + 0.5)), at least 1e-6. */
static double idfOf(sqlite3_int64 nRow, sqlite3_int64 nHit){
  double idf = log( (nRow - nHit + 0.5) / (nHit + 0.5) );
  if( idf<=0.0 ) idf = 1e-6;
  return idf;
}

/*
** Parses `dfs` into p->aIDF. Returns 0 on success, 1 when it does not hold exactly nPhrase
** non-negative integers separated by commas.
*/
static int parseDfs(Bm25Data *p, sqlite3_int64 nRow, const char *z){
  int i = 0;
  const char *c = z;
  while( 1 ){
    sqlite3_int64 n = 0;
    int digits = 0;
    while( *c>='0' && *c<='9' ){
      n = n*10 + (*c - '0');
      if( n>((sqlite3_int64)1<<53) ) return 1;
      c++; digits++;
    }
    if( digits==0 || i>=p->nPhrase ) return 1;
    p->aIDF[i++] = idfOf(nRow, n);
    if( *c==0 ) break;
    if( *c!=',' ) return 1;
    c++;
  }
  return i==p->nPhrase ? 0 : 1;
}

/*
** The statement's Bm25Data, made on its first row (row count, average size, IDFs, and the size
** cache named by pSizes, which may be NULL).
*/
static int getData(const Fts5ExtensionApi *pApi, Fts5Context *pFts, sqlite3_value *pDfs, sqlite3_value *pSizes, Bm25Data **ppData, int *pBadDfs){
  int rc = SQLITE_OK;
  Bm25Data *p = (Bm25Data*)pApi->xGetAuxdata(pFts, 0);
  *pBadDfs = 0;
  if( p==0 ){
    int nPhrase = pApi->xPhraseCount(pFts);
    sqlite3_int64 nRow = 0, nToken = 0;
    int i;
    p = (Bm25Data*)sqlite3_malloc64(sizeof(Bm25Data) + (sqlite3_int64)nPhrase*2*sizeof(double));
    if( p==0 ) return SQLITE_NOMEM;
    memset(p, 0, sizeof(Bm25Data) + (size_t)nPhrase*2*sizeof(double));
    p->nPhrase = nPhrase;
    p->aIDF = (double*)&p[1];
    p->aFreq = &p->aIDF[nPhrase];
    rc = pApi->xRowCount(pFts, &nRow);
    if( rc==SQLITE_OK ) rc = pApi->xColumnTotalSize(pFts, -1, &nToken);
    if( rc==SQLITE_OK ) p->avgdl = (double)nToken / (double)nRow;
    if( rc==SQLITE_OK && pDfs!=0 && sqlite3_value_type(pDfs)!=SQLITE_NULL ){
      if( parseDfs(p, nRow, (const char*)sqlite3_value_text(pDfs)) ){
        *pBadDfs = 1;
        rc = SQLITE_ERROR;
      }
    }else{
      for(i=0; rc==SQLITE_OK && i<nPhrase; i++){
        sqlite3_int64 nHit = 0;
        rc = pApi->xQueryPhrase(pFts, i, (void*)&nHit, countCb);
        if( rc==SQLITE_OK ) p->aIDF[i] = idfOf(nRow, nHit);
      }
    }
    if( rc==SQLITE_OK && pSizes!=0 && sqlite3_value_type(pSizes)==SQLITE_TEXT ){
      p->pSizes = sizeCache((ExtState*)pApi->xUserData(pFts), (const char*)sqlite3_value_text(pSizes));
    }
    if( rc==SQLITE_OK ) rc = pApi->xSetAuxdata(pFts, p, sqlite3_free);
    else sqlite3_free(p);
    if( rc!=SQLITE_OK ) p = 0;
  }
  *ppData = p;
  return rc;
}

static void mnemeBm25(const Fts5ExtensionApi *pApi, Fts5Context *pFts, sqlite3_context *pCtx, int nVal, sqlite3_value **apVal){
  const double k1 = 1.2;
  const double b = 0.75;
  int nCol = pApi->xColumnCount(pFts);
  int rc, i, nInst = 0, badDfs = 0;
  double score = 0.0, D = 0.0, *aFreq = 0;
  Bm25Data *pData = 0;
  if( nVal!=nCol+1 && nVal!=nCol+2 ){
    char *zErr = sqlite3_mprintf("mneme_bm25: expected %d column weights, the frequencies (or NULL) and optionally a size cache name, got %d arguments", nCol, nVal);
    sqlite3_result_error(pCtx, zErr, -1);
    sqlite3_free(zErr);
    return;
  }
  rc = getData(pApi, pFts, apVal[nCol], nVal==nCol+2 ? apVal[nCol+1] : 0, &pData, &badDfs);
  if( badDfs ){
    char *zErr = sqlite3_mprintf("mneme_bm25: the frequencies must be %d non-negative integers separated by commas", pApi->xPhraseCount(pFts));
    sqlite3_result_error(pCtx, zErr, -1);
    sqlite3_free(zErr);
    return;
  }
  if( rc==SQLITE_OK ){
    aFreq = pData->aFreq;
    memset(aFreq, 0, sizeof(double) * pData->nPhrase);
    rc = pApi->xInstCount(pFts, &nInst);
  }
  for(i=0; rc==SQLITE_OK && i<nInst; i++){
    int ip, ic, io;
    rc = pApi->xInst(pFts, i, &ip, &ic, &io);
    if( rc==SQLITE_OK ){
      double w = (nCol > ic) ? sqlite3_value_double(apVal[ic]) : 1.0;
      aFreq[ip] += w;
    }
  }
  if( rc==SQLITE_OK ){
    int nTok;
    rc = rowSize(pApi, pFts, pData->pSizes, &nTok);
    D = (double)nTok;
  }
  if( rc==SQLITE_OK ){
    for(i=0; i<pData->nPhrase; i++){
      score += pData->aIDF[i] * (
          ( aFreq[i] * (k1 + 1.0) ) /
          ( aFreq[i] + k1 * (1 - b + b * D / pData->avgdl) )
      );
    }
    sqlite3_result_double(pCtx, -1.0 * score);
  }else{
    sqlite3_result_error_code(pCtx, rc);
  }
}

/*
** mneme_phrase_rows(fts_table): the number of rows holding each phrase of the MATCH expression, in
** phrase order, comma-separated: what bm25() counts before its first row, for mneme_bm25's `dfs`.
** Called on any one row of the match (LIMIT 1); a MATCH without rows holds each phrase in 0 rows.
*/
static void mnemePhraseRows(const Fts5ExtensionApi *pApi, Fts5Context *pFts, sqlite3_context *pCtx, int nVal, sqlite3_value **apVal){
  int nPhrase = pApi->xPhraseCount(pFts);
  int i, rc = SQLITE_OK;
  sqlite3_str *out = sqlite3_str_new(0);
  (void)apVal;
  if( nVal!=0 ){
    sqlite3_result_error(pCtx, "mneme_phrase_rows: takes only the table", -1);
    sqlite3_free(sqlite3_str_finish(out));
    return;
  }
  for(i=0; rc==SQLITE_OK && i<nPhrase; i++){
    sqlite3_int64 nHit = 0;
    rc = pApi->xQueryPhrase(pFts, i, (void*)&nHit, countCb);
    if( rc==SQLITE_OK ) sqlite3_str_appendf(out, i==0 ? "%lld" : ",%lld", nHit);
  }
  if( rc!=SQLITE_OK ){
    sqlite3_free(sqlite3_str_finish(out));
    sqlite3_result_error_code(pCtx, rc);
    return;
  }
  if( sqlite3_str_errcode(out) ){
    sqlite3_free(sqlite3_str_finish(out));
    sqlite3_result_error_nomem(pCtx);
    return;
  }
  sqlite3_result_text(pCtx, sqlite3_str_finish(out), -1, sqlite3_free);
}

/*
** mneme_warm_sizes(name, fts_table): reads every row size of fts_table from its %_docsize table
** (one sequential scan: the sum of each row's per-column varints, which is what xColumnSize(-1)
** returns) into the size cache `name`, so the first searches after a start do not pay a b-tree
** lookup per row scored. Returns the number of rows cached. Same soundness rule as `sizes`.
*/
static void mnemeWarmSizes(sqlite3_context *pCtx, int nVal, sqlite3_value **apVal){
  ExtState *st = (ExtState*)sqlite3_user_data(pCtx);
  const char *zName = (const char*)sqlite3_value_text(apVal[0]);
  const char *zTable = (const char*)sqlite3_value_text(apVal[1]);
  sqlite3 *db = sqlite3_context_db_handle(pCtx);
  sqlite3_stmt *pStmt = 0;
  sqlite3_int64 nCached = 0;
  SizeCache *c;
  char *zSql;
  int rc;
  (void)nVal;
  if( zName==0 || zTable==0 ){
    sqlite3_result_error(pCtx, "mneme_warm_sizes: expected a cache name and an FTS5 table name", -1);
    return;
  }
  c = sizeCache(st, zName);
  if( c==0 ){ sqlite3_result_error_nomem(pCtx); return; }
  zSql = sqlite3_mprintf("SELECT id, sz FROM \"%w_docsize\"", zTable);
  if( zSql==0 ){ sqlite3_result_error_nomem(pCtx); return; }
  rc = sqlite3_prepare_v2(db, zSql, -1, &pStmt, 0);
  sqlite3_free(zSql);
  if( rc!=SQLITE_OK ){
    sqlite3_result_error(pCtx, sqlite3_errmsg(db), -1);
    sqlite3_finalize(pStmt);
    return;
  }
  while( (rc = sqlite3_step(pStmt))==SQLITE_ROW ){
    sqlite3_int64 iRow = sqlite3_column_int64(pStmt, 0);
    const unsigned char *a = (const unsigned char*)sqlite3_column_blob(pStmt, 1);
    int nByte = sqlite3_column_bytes(pStmt, 1), i = 0;
    sqlite3_uint64 total = 0;
    while( i<nByte ){
      /* SQLite's varint: 7 bits a byte, high bit set on all but the last (sizes fit in a few bytes). */
      sqlite3_uint64 v = 0;
      int k;
      for(k=0; k<9 && i<nByte; k++){
        unsigned char b = a[i++];
        v = (v<<7) | (b & 0x7f);
        if( !(b & 0x80) ) break;
      }
      total += v;
    }
    if( total>0 && total<0xFFFF && sizeCacheReserve(c, iRow) ){
      c->a[iRow] = (unsigned short)total;
      nCached++;
    }
  }
  sqlite3_finalize(pStmt);
  if( rc!=SQLITE_DONE ){
    sqlite3_result_error(pCtx, sqlite3_errmsg(db), -1);
    return;
  }
  sqlite3_result_int64(pCtx, nCached);
}

/* The FTS5 API of `db` (NULL when FTS5 is not compiled in). */
static fts5_api *fts5ApiOf(sqlite3 *db){
  fts5_api *pRet = 0;
  sqlite3_stmt *pStmt = 0;
  if( sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &pStmt, 0)==SQLITE_OK ){
    sqlite3_bind_pointer(pStmt, 1, (void*)&pRet, "fts5_api_ptr", 0);
    sqlite3_step(pStmt);
  }
  sqlite3_finalize(pStmt);
  return pRet;
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_mnemefts_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi){
  fts5_api *fts;
  ExtState *st;
  int rc;
  SQLITE_EXTENSION_INIT2(pApi);
  fts = fts5ApiOf(db);
  if( fts==0 || fts->iVersion<2 ){
    *pzErrMsg = sqlite3_mprintf("mneme_fts: this SQLite has no FTS5 (version 2 or later)");
    return SQLITE_ERROR;
  }
  st = (ExtState*)sqlite3_malloc(sizeof(ExtState));
  if( st==0 ) return SQLITE_NOMEM;
  memset(st, 0, sizeof(ExtState));
  /* FTS5 calls extStateFree when the connection closes; not when registering fails. */
  rc = fts->xCreateFunction(fts, "mneme_bm25", (void*)st, mnemeBm25, extStateFree);
  if( rc!=SQLITE_OK ) extStateFree(st);
  if( rc==SQLITE_OK ) rc = fts->xCreateFunction(fts, "mneme_phrase_rows", 0, mnemePhraseRows, 0);
  /* Shares `st` with mneme_bm25, which frees it: no destructor here. */
  if( rc==SQLITE_OK ) rc = sqlite3_create_function_v2(db, "mneme_warm_sizes", 2, SQLITE_UTF8, (void*)st, mnemeWarmSizes, 0, 0, 0);
  return rc;
}
