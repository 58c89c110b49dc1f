/** The feature store's read seam, used by the chat pipeline. */

export type FeatureValue = number | string | null | number[] | string[] | Record<string, number>;

export interface FeatureReader {
  /** Latest materialized values for the user (empty object for a user with no history). */
  getOnlineFeatures(userId: number): Record<string, FeatureValue>;
}
