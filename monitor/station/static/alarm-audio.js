// Alarm sounds generated in the page with Web Audio, as IEC 60601-1-8 patterns them
// (docs/station.md "Alarm signals", where each number below is checked against the standard's
// range): a burst of pulses per priority, repeated after an inter-burst interval.
//
// high:   10 pulses, 3+2, a pause, 3+2; pulse 150 ms, spacing 100 ms (range 50-125 ms),
//         the 3rd-4th gap 2 x spacing + one pulse (the standard's 3+2 grouping), the pause
//         between the halves 0.8 s (0.35-1.30 s); next burst 6 s after the last pulse
//         (2.5-15 s)
// medium: 3 pulses of 200 ms (125-250 ms), spacing 200 ms (125-250 ms); every 8 s (2.5-30 s)
// low:    2 pulses of 200 ms, spacing 200 ms; every 20 s (more than 15 s)
// Each pulse: a 440 Hz fundamental (150-1000 Hz) with harmonics 2-5 (880-2200 Hz, inside
// 300-4000 Hz) within 8 dB of it (the standard allows 15 dB), rising and falling over 15 % of
// its length (10-20 %).

export const PATTERNS = Object.freeze({
  high: { pulse: 0.15, spacing: 0.1, groups: [3, 2, 3, 2], groupGap: 0.35, pause: 0.8, interval: 6.0 },
  medium: { pulse: 0.2, spacing: 0.2, groups: [3], groupGap: 0, pause: 0, interval: 8.0 },
  low: { pulse: 0.2, spacing: 0.2, groups: [2], groupGap: 0, pause: 0, interval: 20.0 },
});
export const FUNDAMENTAL_HZ = 440;
export const HARMONICS = Object.freeze([1, 0.8, 0.6, 0.5, 0.4]);
export const RISE = 0.15;
export const RANK = Object.freeze({ low: 1, medium: 2, high: 3 });

// The pulses of one burst: [{offset, duration}] in seconds from the burst's start.
export function burst(priority) {
  const p = PATTERNS[priority];
  const pulses = [];
  let t = 0;
  p.groups.forEach((n, g) => {
    if (g > 0) t += g === 2 ? p.pause : p.groupGap; // 3+2 | pause | 3+2
    for (let i = 0; i < n; i += 1) {
      if (i > 0) t += p.spacing;
      pulses.push({ offset: t, duration: p.pulse });
      t += p.pulse;
    }
  });
  return pulses;
}

// One player for the page: `play(priority)` sounds that priority's bursts until `play(null)`.
export class AlarmSound {
  constructor(Context = window.AudioContext) {
    this.Context = Context;
    this.ctx = null;
    this.priority = null;
    this.timer = null;
    this.listeners = [];
  }

  get running() {
    return this.ctx !== null && this.ctx.state === "running";
  }

  onchange(fn) {
    this.listeners.push(fn);
  }

  _changed() {
    for (const fn of this.listeners) fn(this.running);
  }

  // Called from a user gesture: browsers only let a page's audio run after one.
  async arm() {
    if (this.ctx === null) {
      this.ctx = new this.Context();
      this.ctx.onstatechange = () => this._changed();
      const real = new Float32Array(HARMONICS.length + 1);
      const imag = new Float32Array(HARMONICS.length + 1);
      HARMONICS.forEach((a, i) => { imag[i + 1] = a; });
      this.wave = this.ctx.createPeriodicWave(real, imag);
    }
    await this.ctx.resume();
    this._changed();
    if (this.priority !== null && this.timer === null) this._burst();
  }

  play(priority) {
    if (priority === this.priority) return;
    this.priority = priority;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    // a higher priority starts its burst at once; none stops after the burst in flight
    if (priority !== null && this.running) this._burst();
  }

  _burst() {
    this.timer = null;
    const priority = this.priority;
    if (priority === null || !this.running) return;
    const p = PATTERNS[priority];
    const start = this.ctx.currentTime + 0.02;
    const pulses = burst(priority);
    for (const { offset, duration } of pulses) this._pulse(start + offset, duration);
    const last = pulses[pulses.length - 1];
    const next = (last.offset + last.duration + p.interval) * 1000;
    this.timer = setTimeout(() => this._burst(), next);
  }

  _pulse(at, duration) {
    const osc = this.ctx.createOscillator();
    osc.setPeriodicWave(this.wave);
    osc.frequency.setValueAtTime(FUNDAMENTAL_HZ, at);
    const gain = this.ctx.createGain();
    const rise = duration * RISE;
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(0.25, at + rise);
    gain.gain.setValueAtTime(0.25, at + duration - rise);
    gain.gain.linearRampToValueAtTime(0, at + duration);
    osc.connect(gain);
    gain.connect(this.ctx.destination);
    osc.start(at);
    osc.stop(at + duration);
  }
}
