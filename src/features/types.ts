/** The feature store's read seam, used by the chat pipeline. */
import type { FeatureValue } from '../core/store/features.ts';

/** A feature value as stored (JSON): defined by the store, re-exported for the pipelines. */
export type { FeatureValue } from '../core/store/features.ts';

export interface FeatureReader {
  /** Latest materialized values for the user (empty object for a user with no history). */
  getOnlineFeatures(userId: number): Promise<Record<string, FeatureValue>>;
}

/**
 * What personalization knows about the asking user, derived from their feature values
 * (toPersonalizationSignals in personalize.ts) and consumed by the chat pipeline's re-rank.
 */
export interface PersonalizationSignals {
  /** 0 turns personalization off (ranking must then equal the unpersonalized one exactly). */
  weight: number;
  engagedDocuments: number[];
  /** Chunk id → when the user rated down an answer citing it (epoch ms): demoted, fading with time. */
  dislikedChunks: Map<number, number>;
  /** Key terms of the user's recent corrections, with their time (epoch ms): matching chunks are promoted. */
  corrections: Array<{ terms: string[]; atMs: number }>;
  topCollections: string[];
  /** Decayed mean of the user's query embeddings, same model as the index; null if unknown. */
  interestVector: Float32Array | null;
}
