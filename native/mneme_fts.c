/*
** mneme_fts: an SQLite loadable extension adding one FTS5 auxiliary function, mneme_bm25().
**
**   mneme_bm25(fts_table, w_0, ..., w_{C-1}, dfs)
**
** is FTS5's bm25(fts_table, w_0, ..., w_{C-1}) (same k1 = 1.2, b = 0.75, same clamped IDF, same
** arithmetic in the same order, so the same double) except for where the phrases' document
** frequencies come from. bm25() counts them at the start of every statement by walking each
** phrase's whole posting list (xQueryPhrase); a search that runs several statements for one query
** (mneme's pair cover, one best-chunk MATCH per listed document) pays that walk again in each.
** Here `dfs` gives them: the number of rows holding each phrase of the MATCH expression, in the
** order the phrases appear in it, as decimal integers separated by commas ("812,40213,7"). The
** caller counts each once (and caches it while the table is unchanged).
**
** With `dfs` NULL the function counts the frequencies itself, exactly as bm25() does.
** Errors (raised as SQL errors): C + 1 trailing arguments expected; a `dfs` that does not hold
** exactly one non-negative integer per phrase.
**
** Built by scripts/fts-native.mjs (mneme's postinstall) against the SQLite headers better-sqlite3
** ships; loaded per connection by src/core/store/sqlite/fts-native.ts.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Bm25Data Bm25Data;
struct Bm25Data {
  int nPhrase;    /* Phrases in the MATCH expression */
  double avgdl;   /* Average row size, in tokens */
  double *aIDF;   /* IDF of each phrase */
  double *aFreq;  /* Scratch: weighted frequency of each phrase in the current row */
};

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

/* The statement's Bm25Data, made on its first row (row count, average size, IDFs). */
static int getData(const Fts5ExtensionApi *pApi, Fts5Context *pFts, sqlite3_value *pDfs, Bm25Data **ppData, int *pBadDfs){
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
  if( nVal!=nCol+1 ){
    char *zErr = sqlite3_mprintf("mneme_bm25: expected %d column weights and the frequencies (or NULL), got %d arguments", nCol, nVal);
    sqlite3_result_error(pCtx, zErr, -1);
    sqlite3_free(zErr);
    return;
  }
  rc = getData(pApi, pFts, apVal[nCol], &pData, &badDfs);
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
    rc = pApi->xColumnSize(pFts, -1, &nTok);
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
  SQLITE_EXTENSION_INIT2(pApi);
  fts = fts5ApiOf(db);
  if( fts==0 || fts->iVersion<2 ){
    *pzErrMsg = sqlite3_mprintf("mneme_fts: this SQLite has no FTS5 (version 2 or later)");
    return SQLITE_ERROR;
  }
  return fts->xCreateFunction(fts, "mneme_bm25", 0, mnemeBm25, 0);
}
