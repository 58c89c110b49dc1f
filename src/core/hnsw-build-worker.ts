/**
 * Worker thread that builds one HNSW shard (hnsw-build.ts drives it). Protocol: `add` messages carry
 * labels (Float64Array) and their vectors packed in one Float32Array (both transferred), each answered
 * by `ack`; `save` writes the shard to a file and answers `saved` with its size; any failure answers
 * `error` (the driver terminates the worker).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { HnswVectorIndex } from './vector-index.ts';
import type { ShardWorkerData, ShardWorkerReply, ShardWorkerRequest } from './hnsw-build.ts';

const data = (workerData as { data: ShardWorkerData }).data;
const port = parentPort!;
const index = HnswVectorIndex.create({ dimension: data.dimension, m: data.m, efConstruction: data.efConstruction, initialCapacity: data.capacity });

port.on('message', (msg: ShardWorkerRequest) => {
  let reply: ShardWorkerReply;
  try {
    if (msg.type === 'add') {
      const d = data.dimension;
      for (let i = 0; i < msg.labels.length; i++) index.upsert(msg.labels[i]!, msg.vectors.subarray(i * d, (i + 1) * d));
      reply = { type: 'ack' };
    } else {
      index.save(msg.file);
      reply = { type: 'saved', vectors: index.size(), deleted: index.deletedLabels() };
    }
  } catch (err) {
    reply = { type: 'error', message: (err as Error).message };
  }
  port.postMessage(reply);
});
