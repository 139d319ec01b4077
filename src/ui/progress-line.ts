// One status line on a terminal, redrawn in place at most every 100 ms; silent elsewhere.

export class ProgressLine {
  private last = 0;
  private shown = false;

  constructor(private readonly out: NodeJS.WritableStream & { isTTY?: boolean }) {}

  get enabled(): boolean {
    return this.out.isTTY === true;
  }

  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.out.write(`\r\x1b[2K${text}`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) this.out.write("\r\x1b[2K");
    this.shown = false;
  }
}
