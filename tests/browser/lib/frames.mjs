// Records a page's websocket frames (`/ws`), parsed, so a test can wait for the message it
// expects instead of sleeping.

export class Frames {
  constructor(page) {
    this.sent = [];
    this.received = [];
    this.waiters = [];
    this.sockets = 0;
    page.on('websocket', (ws) => {
      if (!new URL(ws.url()).pathname.endsWith('/ws')) return;
      this.sockets += 1;
      const socket = this.sockets;
      ws.on('framesent', (f) => this.record('sent', f.payload, socket));
      ws.on('framereceived', (f) => this.record('received', f.payload, socket));
    });
  }

  record(dir, payload, socket) {
    let msg;
    try {
      msg = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
    } catch {
      return;
    }
    const frame = { dir, msg, socket };
    this[dir].push(frame);
    this.waiters = this.waiters.filter((w) => {
      if (w.dir === dir && w.pred(msg, frame)) {
        w.resolve(msg);
        return false;
      }
      return true;
    });
  }

  /** The first frame (already seen or still to come) in direction `dir` matching `pred`. */
  waitFor(dir, pred, { timeout = 15_000, after = 0, what = 'a frame' } = {}) {
    const seen = this[dir].slice(after).find((f) => pred(f.msg, f));
    if (seen) return Promise.resolve(seen.msg);
    return new Promise((resolve, reject) => {
      const waiter = { dir, pred, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        if (!this.waiters.includes(waiter)) return;
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const last = this[dir].slice(-8).map((f) => JSON.stringify(f.msg)).join('\n  ');
        reject(new Error(`no ${dir} ${what} within ${timeout} ms; last ${dir}:\n  ${last}`));
      }, timeout);
    });
  }

  gotMessage(type, opts = {}) {
    return this.waitFor('received', (m) => m.type === type && (!opts.where || opts.where(m)), { what: type, ...opts });
  }

  sentMessage(type, opts = {}) {
    return this.waitFor('sent', (m) => m.type === type && (!opts.where || opts.where(m)), { what: type, ...opts });
  }

  /** The highest `seq` received so far. */
  lastSeq() {
    return this.received.reduce((max, f) => (typeof f.msg.seq === 'number' && f.msg.seq > max ? f.msg.seq : max), 0);
  }
}
