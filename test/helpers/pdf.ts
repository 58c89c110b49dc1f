/** Writes real PDF files for tests with pdf-lib (no fixture files to keep in sync). */
import { PDFDocument, StandardFonts } from 'pdf-lib';

/** Body lines per page; a page's `heading` is drawn first in a large font. */
export interface PdfPage {
  heading?: string;
  lines: string[];
}

/** A real PDF written by pdf-lib: Helvetica 11 pt body text, Helvetica-Bold 20 pt headings, a Title. */
export async function buildPdf(pages: readonly PdfPage[], title?: string): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const body = await doc.embedFont(StandardFonts.Helvetica);
  const bold = await doc.embedFont(StandardFonts.HelveticaBold);
  if (title) doc.setTitle(title);
  for (const p of pages) {
    const page = doc.addPage([595, 842]);
    let y = 790;
    if (p.heading) {
      page.drawText(p.heading, { x: 50, y, size: 20, font: bold });
      y -= 36;
    }
    for (const line of p.lines) {
      page.drawText(line, { x: 50, y, size: 11, font: body });
      y -= 16;
    }
  }
  return doc.save();
}
