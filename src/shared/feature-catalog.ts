/**
 * The user feature catalog: what each feature mneme knows about means (name, type, source, freshness,
 * description) and the parameters that define it (windows, list caps, half-life). Pure data with no
 * imports, shared by the server and the browser: src/features/definitions.ts adds how each
 * precomputed value is computed (and states the time semantics every reader relies on), `mneme
 * features list` prints the catalog, and the chat page's "what mneme knows about you" panel shows the
 * descriptions. Registry order: precomputed features first (grouped by source), then on-demand ones.
 */

/** Window of `messages_7d`, in days (ending at the event time, start exclusive). */
export const MESSAGES_WINDOW_DAYS = 7;
/** Window of `active_days_30d`, in days (ending at the event time, start exclusive). */
export const ACTIVE_DAYS_WINDOW_DAYS = 30;
/** Most collections listed in `top_collections`. */
export const TOP_COLLECTIONS_MAX = 3;
/** Most documents listed in `engaged_documents` / `disliked_documents`. */
export const DOCUMENT_LIST_MAX = 50;
/**
 * Half-life of a query's weight in the interest vector, in days: a question asked 14 days before the
 * latest one counts half as much, 28 days before a quarter.
 */
export const INTEREST_HALF_LIFE_DAYS = 14;
/** Weight of a correction's length against an up-rated answer's length (1) in `preferred_answer_length`. */
export const CORRECTION_LENGTH_WEIGHT = 2;
/** Most chunks listed in `disliked_chunks` (the most recently disliked first). */
export const DISLIKED_CHUNKS_MAX = 50;
/** Most corrections listed in `correction_terms` (the most recent). */
export const CORRECTIONS_MAX = 10;
/** Key terms kept per correction in `correction_terms`. */
export const CORRECTION_TERMS_MAX = 12;

/**
 * Value type of a feature (how to read its JSON value). `timed_map`: an object key → epoch
 * milliseconds (the time the key was last seen), e.g. {"812": 1764590000000}.
 */
export type FeatureType = 'int' | 'float' | 'timestamp' | 'string_list' | 'int_list' | 'float_vector' | 'timed_map';
/** Where a feature's value comes from: a log table, or the request being answered. */
export type FeatureSource = 'responses' | 'feedback' | 'request';

/** What one feature means. */
export interface FeatureDefinition {
  name: string;
  type: FeatureType;
  /** True when the value may be null (unknown). */
  nullable: boolean;
  description: string;
  source: FeatureSource;
  /** How fresh the value is when read, in words. */
  freshness: string;
}

const RESPONSES_FRESHNESS = 'materialized (every MNEME_FEATURES_INTERVAL_S, default 60 s); value as of the user\'s latest message';
const FEEDBACK_FRESHNESS = 'materialized (every MNEME_FEATURES_INTERVAL_S, default 60 s); value as of the user\'s latest rating';
const REQUEST_FRESHNESS = 'computed at request time from the request itself; logged with the precomputed values';

/**
 * Every feature, in registry order: the ones materialized into feature_history / feature_online
 * (source `responses` or `feedback`, computed in src/features/definitions.ts), then the ones computed
 * from the request (source `request`, src/features/on-demand.ts).
 */
export const FEATURE_CATALOG = [
  {
    name: 'messages_total',
    type: 'int',
    nullable: false,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: 'Questions the user has asked (every logged answer attempt, whatever its status).',
  },
  {
    name: 'messages_7d',
    type: 'int',
    nullable: false,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: `Questions asked in the ${MESSAGES_WINDOW_DAYS} days ending at the latest one (window (t-7d, t], t = event time).`,
  },
  {
    name: 'active_days_30d',
    type: 'int',
    nullable: false,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: `Distinct UTC days with a question in the ${ACTIVE_DAYS_WINDOW_DAYS} days ending at the latest one.`,
  },
  {
    name: 'last_seen_at',
    type: 'timestamp',
    nullable: false,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: 'Time of the latest question (ISO-8601 UTC).',
  },
  {
    name: 'top_collections',
    type: 'string_list',
    nullable: false,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: `Up to ${TOP_COLLECTIONS_MAX} collections the user asks about most (collection filter + collections of cited documents), most frequent first, ties by name.`,
  },
  {
    name: 'avg_question_tokens',
    type: 'float',
    nullable: false,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: 'Mean question length in model-independent tokens (word runs + punctuation marks).',
  },
  {
    name: 'interest_vector',
    type: 'float_vector',
    nullable: true,
    source: 'responses',
    freshness: RESPONSES_FRESHNESS,
    description: `Time-decayed mean of the user's query embeddings (half-life ${INTEREST_HALF_LIFE_DAYS} days; the decay to "now" cancels out of a mean, so it needs no refresh); null when no embedding model has run.`,
  },
  {
    name: 'ratings_total',
    type: 'int',
    nullable: false,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: 'Answers the user has rated (the latest rating per answer counts).',
  },
  {
    name: 'helpful_rate',
    type: 'float',
    nullable: true,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: 'Share of rated answers rated up (latest rating per answer); null before any rating.',
  },
  {
    name: 'engaged_documents',
    type: 'int_list',
    nullable: false,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: `Up to ${DOCUMENT_LIST_MAX} document ids cited in answers the user rated up more often than down, strongest first.`,
  },
  {
    name: 'disliked_documents',
    type: 'int_list',
    nullable: false,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: `Up to ${DOCUMENT_LIST_MAX} document ids cited in answers the user rated down more often than up, strongest first.`,
  },
  {
    name: 'disliked_chunks',
    type: 'timed_map',
    nullable: false,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: `Up to ${DISLIKED_CHUNKS_MAX} passages (chunk ids) cited in answers the user currently rates down, each with the time of that rating (epoch ms), most recent first. Re-ranking demotes these passages by a bounded amount that fades with time; it never hides a document.`,
  },
  {
    name: 'correction_terms',
    type: 'timed_map',
    nullable: false,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: `Key terms of the user's ${CORRECTIONS_MAX} most recent corrections (up to ${CORRECTION_TERMS_MAX} per correction, space-separated), each with the time of the correction (epoch ms). Re-ranking promotes passages whose text contains them, by a bounded amount that fades with time; never shown to the model.`,
  },
  {
    name: 'preferred_answer_length',
    type: 'int',
    nullable: true,
    source: 'feedback',
    freshness: FEEDBACK_FRESHNESS,
    description: `Preferred answer length in words, learned from feedback: weighted median of the lengths of up-rated answers (weight 1) and of corrections (weight ${CORRECTION_LENGTH_WEIGHT}); null without such feedback.`,
  },
  { name: 'turn_index', type: 'int', nullable: false, source: 'request', freshness: REQUEST_FRESHNESS, description: 'Index of this question in its conversation (0 = first).' },
  {
    name: 'seconds_since_previous_message',
    type: 'float',
    nullable: true,
    source: 'request',
    freshness: REQUEST_FRESHNESS,
    description: "Seconds since the user's previous message (in any conversation); null for their very first one.",
  },
  { name: 'question_tokens', type: 'int', nullable: false, source: 'request', freshness: REQUEST_FRESHNESS, description: 'Length of this question in tokens of the serving tokenizer.' },
  {
    name: 'is_follow_up',
    type: 'int',
    nullable: false,
    source: 'request',
    freshness: REQUEST_FRESHNESS,
    description: '1 when the question continues a conversation whose previous message is recent (see FOLLOW_UP_WINDOW_SECONDS), else 0.',
  },
] as const satisfies readonly FeatureDefinition[];
