import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chunkDocument } from '../../../ingest/chunk.ts';
import { loadDocument, pdfSections } from '../../../ingest/loaders.ts';
import { estimateTokens } from '../../../src/core/tokens.ts';
import type { PdfPage } from '../../helpers/pdf.ts';
import { buildPdf } from '../../helpers/pdf.ts';

const MANUAL: PdfPage[] = [
  { heading: 'Installing the Lantern', lines: ['Mount the Lantern bracket on a dry wall.', 'Use the two M4 screws from the box.'] },
  { lines: ['The bracket holds up to 3 kg.', 'Tighten the screws by hand only.'] },
  { heading: 'Charging', lines: ['Charge the Lantern for six hours before first use.', 'The ring glows green when the battery is full.'] },
];

describe('PDF ingestion (pdf-lib generated files)', () => {
  it('loads a file read as a Buffer (what ingest reads), one section per page, headings from font size', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-pdf-')), 'lantern.pdf');
    fs.writeFileSync(file, await buildPdf(MANUAL, 'Lantern manual'));
    const bytes = fs.readFileSync(file);
    expect(Buffer.isBuffer(bytes)).toBe(true);
    const doc = await loadDocument(bytes, file);
    expect(doc.title).toBe('Lantern manual');
    expect(doc.sections).toEqual([
      { headingPath: ['Installing the Lantern', 'page 1'], text: 'Mount the Lantern bracket on a dry wall.\nUse the two M4 screws from the box.' },
      { headingPath: ['Installing the Lantern', 'page 2'], text: 'The bracket holds up to 3 kg.\nTighten the screws by hand only.' },
      { headingPath: ['Charging', 'page 3'], text: 'Charge the Lantern for six hours before first use.\nThe ring glows green when the battery is full.' },
    ]);
    // The caller's bytes survive (pdf.js got a copy).
    expect(bytes.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    // Small pages are not packed together: every chunk keeps its page.
    const chunks = await chunkDocument(doc, estimateTokens);
    expect(chunks.map((c) => c.headingPath)).toEqual(['Installing the Lantern > page 1', 'Installing the Lantern > page 2', 'Charging > page 3']);
  });

  it('text before any heading is under its page alone; long or sentence-like large lines are not headings', () => {
    const sections = pdfSections([
      [{ text: 'Preface text.', size: 10 }, { text: 'Big Title', size: 18 }, { text: 'Body under it, long enough to be most of the text of the document.', size: 10 }],
      [{ text: 'A large line that ends like a sentence.', size: 18 }, { text: 'More body.', size: 10 }],
    ]);
    expect(sections).toEqual([
      { headingPath: ['page 1'], text: 'Preface text.' },
      { headingPath: ['Big Title', 'page 1'], text: 'Body under it, long enough to be most of the text of the document.' },
      { headingPath: ['Big Title', 'page 2'], text: 'A large line that ends like a sentence.\nMore body.' },
    ]);
  });
});
