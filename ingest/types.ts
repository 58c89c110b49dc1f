/**
 * Shapes shared by the ingestion stages. Loaders turn bytes into sections (pure, no I/O beyond
 * what they are given), the chunker turns sections into chunks (pure), the pipeline does the I/O.
 */

/** A run of text under one heading path, in document order. */
export interface Section {
  /** Heading trail from the document root, e.g. ["Install", "On Linux"]. Empty for text before any heading. */
  headingPath: string[];
  /** Readable text of the section (no markup). Paragraphs separated by blank lines. */
  text: string;
}

/** What a loader extracts from one file. */
export interface LoadedDocument {
  /** Human title: <title>, the first h1 / `# ` heading, a JSON "title" field, or the file name. */
  title: string;
  /** MIME-ish kind that produced it: text/markdown, text/plain, text/html, application/pdf, application/json. */
  kind: DocumentKind;
  sections: Section[];
  /**
   * What kind of page this is, for ranking (see classifyPage in loaders.ts): 'content', or a
   * navigation page ('index', 'toc', 'release_notes') that ingest stores with a weight < 1.
   * Absent: 'content'.
   */
  pageKind?: PageKind | undefined;
  /** HTML: share of the visible text's characters that sit inside links (0..1); absent for other kinds. */
  linkDensity?: number | undefined;
}

/** A page's ranking verdict at ingest. */
export type PageKind = 'content' | 'index' | 'toc' | 'release_notes';

export type DocumentKind = 'text/markdown' | 'text/plain' | 'text/html' | 'application/pdf' | 'application/json';

/** A chunk ready to be stored and embedded. */
export interface ChunkDraft {
  /** 0-based position in the document. */
  ord: number;
  text: string;
  /** Heading path joined with " > ". */
  headingPath: string;
  tokenCount: number;
}

/** Counts tokens the way the embedding model does (or an estimate when no model is loaded). */
export type TokenCounter = (text: string) => number;

/** Why a file could not be ingested (defined beside LoaderError, which carries it). */
export type { LoadFailureCode } from '../src/core/errors.ts';
