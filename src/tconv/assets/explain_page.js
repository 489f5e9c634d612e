const D = JSON.parse(document.getElementById('data').textContent);
let channel = String(D.channel), selected = D.selected, phase = -1;
const $ = id => document.getElementById(id);
$('title').textContent = 'tconv: ' + D.title;
D.summary.forEach(s => { const d = document.createElement('div'); d.textContent = s; $('summary').appendChild(d); });
$('slice').textContent = 'Slice drawn: ' + D.slice;
$('in-label').textContent = '(' + D.input_label + ')';
function fmt(v) { return (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0)) ? v.toExponential(1) : v.toPrecision(3); }
function color(v, max) { const t = max ? Math.min(1, Math.abs(v) / max) : 0;
  const c = Math.round(255 - 120 * t); return v >= 0 ? `rgb(255,${c},${c})` : `rgb(${c},${c},255)`; }
function grid(table, axes, kind) {
  table.innerHTML = '';
  const rows = axes.length === 2 ? axes[0] : [null], cols = axes[axes.length - 1];
  const head = table.insertRow(); head.insertCell().className = 'hdr';
  cols.forEach(c => { const td = head.insertCell(); td.className = 'hdr'; td.textContent = c; });
  rows.forEach(r => { const tr = table.insertRow(); const h = tr.insertCell(); h.className = 'hdr';
    h.textContent = r === null ? '' : r;
    cols.forEach(c => { const td = tr.insertCell(); td.className = 'cell';
      td.dataset.grid = kind; td.dataset.pos = r === null ? String(c) : r + ',' + c; }); });
}
// Magnitudes (norms) are shaded grey from their smallest to their largest value (red and
// blue stay free for the highlights).
function grey(t) { const c = Math.round(250 - 90 * t); return `rgb(${c},${c},${Math.min(255, c + 5)})`; }
function shade(tds, values) {
  const vs = Object.values(values), lo = Math.min(...vs), hi = Math.max(...vs);
  const span = Math.max(hi - lo, Math.abs(hi) * 1e-9, 1e-30);
  tds.forEach(td => { const v = values[td.dataset.pos]; td.textContent = fmt(v);
    td.style.background = lo < 0 ? color(v, Math.max(Math.abs(lo), hi)) : grey(0.15 + 0.85 * (v - lo) / span); });
}
function cells(kind) { return Array.from(document.querySelectorAll(`td.cell[data-grid="${kind}"]`)); }
function paint() {
  const vals = D.values[channel], kn = D.kernel_norms[channel];
  const omax = Math.max(...Object.values(vals).map(v => Math.abs(parseFloat(v.value))));
  cells('out').forEach(td => { const v = parseFloat(vals[td.dataset.pos].value);
    td.textContent = fmt(v); td.style.background = color(v, omax); });
  shade(cells('in'), D.input_values);
  shade(cells('k'), kn);
  $('out-ch').textContent = channel;
  $('role').textContent = D.filter_roles[channel];
}
function show(key) {
  selected = key;
  document.querySelectorAll('td.hl, td.sel').forEach(td => td.classList.remove('hl', 'sel'));
  const cell = D.cells[key], v = D.values[channel][key];
  const ins = new Set(cell.taps.map(t => t.in)), ks = new Set(cell.taps.map(t => t.k));
  cells('in').forEach(td => { if (ins.has(td.dataset.pos)) td.classList.add('hl'); });
  cells('k').forEach(td => { if (ks.has(td.dataset.pos)) td.classList.add('hl'); });
  cells('out').forEach(td => { if (td.dataset.pos === key) td.classList.add('sel'); });
  $('element').textContent = 'y[' + v.at.join(', ') + ']: ' + cell.taps.length + (cell.taps.length === 1 ? ' tap, ' : ' taps, ') + v.products + (v.products === 1 ? ' product' : ' products');
  $('value').textContent = v.value; $('value').dataset.value = v.value;
  const lines = cell.taps.map((t, k) => `${t.input_index} · ${v.kidx[k]} = ${v.sums[k]}`);
  if (!cell.taps.length) lines.push('no (input, tap) pair reaches this element: bias only');
  lines.push(`+ bias = ${v.bias}`, `preactivation = ${v.pre}`, `${D.activation}(preactivation) = ${v.value}`);
  $('lines').textContent = lines.join('\n');
}
function setPhase(p) {
  phase = p;
  document.querySelectorAll('td.ph').forEach(td => td.classList.remove('ph'));
  document.querySelectorAll('#phase-buttons button').forEach((b, i) => b.classList.toggle('on', i === p + 1));
  if (p < 0) return;
  const ph = D.phases[p], cs = new Set(ph.cells), ts = new Set(ph.taps);
  cells('out').forEach(td => { if (cs.has(td.dataset.pos)) td.classList.add('ph'); });
  cells('k').forEach(td => { if (ts.has(td.dataset.pos)) td.classList.add('ph'); });
}
grid($('grid-in'), D.in_grid, 'in'); grid($('grid-k'), D.k_grid, 'k'); grid($('grid-out'), D.out_grid, 'out');
D.channels.forEach(c => { const o = document.createElement('option'); o.value = o.textContent = c; $('channel').appendChild(o); });
$('channel').value = channel;
$('channel').addEventListener('change', e => { channel = e.target.value; paint(); show(selected); });
const pb = $('phase-buttons');
[{label: 'no phase'}].concat(D.phases.map(p => ({label: 'phase (' + p.residue.join(',') + ')'}))).forEach((p, i) => {
  const b = document.createElement('button'); b.textContent = p.label; b.dataset.phase = i - 1;
  b.addEventListener('click', () => setPhase(i - 1)); pb.appendChild(b); });
const next = document.createElement('button'); next.textContent = 'next phase ▶'; next.id = 'next-phase';
next.addEventListener('click', () => setPhase(D.phases.length ? (phase + 1) % D.phases.length : -1)); pb.appendChild(next);
cells('out').forEach(td => { td.addEventListener('click', () => show(td.dataset.pos));
  td.addEventListener('mouseenter', () => show(td.dataset.pos)); });
paint(); show(selected); setPhase(-1);
