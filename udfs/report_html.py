"""The report page: one self-contained HTML document (inline CSS and JS, no network) around its sections."""
from __future__ import annotations

from html import escape as esc

from udfs.report_sections import Section

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fff}
header{padding:16px 24px;background:#1d3557;color:#fff}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}nav{padding:8px 24px;background:#f1f3f5;position:sticky;top:0;z-index:2}
nav a{margin-right:16px;color:#1d3557;text-decoration:none;font-weight:600}
section{padding:8px 24px 24px;border-bottom:1px solid #eee}h2{margin:16px 0 4px}h3{margin:16px 0 6px}
.note{color:#555;margin:4px 0 10px}.row{display:flex;gap:12px;margin:8px 0;align-items:flex-start}
.query{padding-right:12px;border-right:3px solid #1d3557}.cells{display:flex;flex-wrap:wrap;gap:8px}
.card{margin:0;width:96px;border:3px solid #e3e3e3;border-radius:4px;padding:3px;background:#fff}
.card img,.card .ph{display:block;width:88px;height:88px;object-fit:contain;image-rendering:auto}
.card .ph{background:repeating-linear-gradient(45deg,#eee,#eee 6px,#ddd 6px,#ddd 12px);color:#777;
 font-size:12px;text-align:center;line-height:88px}
[hidden]{display:none!important}
.card .snip{width:88px;height:88px;margin:0;overflow:hidden;font-size:11px;line-height:1.25;color:#333;
 display:-webkit-box;-webkit-line-clamp:7;-webkit-box-orient:vertical;overflow-wrap:anywhere}
.card figcaption{font-size:11px;color:#444;overflow:hidden}.card .id{display:block;white-space:nowrap;
 overflow:hidden;text-overflow:ellipsis;color:#888}
.card.hit{border-color:#2b9348}.card.miss{border-color:#d62828}.card.rep{border-color:#1d3557}
.card.small{width:72px}.card.small img,.card.small .ph,.card.small .snip{width:64px;height:64px;line-height:64px}
.pair{display:flex;gap:2px;align-items:flex-end}.gsize{width:48px;text-align:center;font-weight:700;color:#1d3557}
.hit-t{color:#2b9348;font-weight:600}.miss-t{color:#d62828;font-weight:600}
.tiles{display:flex;gap:12px;flex-wrap:wrap}.tile{border:1px solid #ddd;border-radius:6px;padding:8px 14px;
 min-width:120px}.tile b{display:block;font-size:24px;color:#1d3557}.tile small{display:block;color:#777}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #e3e3e3;padding:3px 8px;text-align:right}
th{background:#f8f9fa;text-align:left}table.confusion td{min-width:28px;text-align:center}
td.diag{font-weight:700;outline:1px solid #1d3557}table.runs td{vertical-align:top;text-align:left}
.stage{font-size:12px}.track{display:inline-block;width:60px;margin-right:6px;vertical-align:middle}
.bar{display:block;height:8px;background:#8ecae6}.outs{font-size:11px;color:#555;word-break:break-all}
header details{margin-top:4px;font-size:12px;opacity:.85}header summary{cursor:pointer}
header ul{margin:2px 0;padding-left:18px;word-break:break-all}
svg.map{max-width:100%;height:auto}svg.map circle{stroke:#fff;stroke-width:.6;cursor:pointer}
svg.map circle:hover{stroke:#000;stroke-width:2}
.legend{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}.legend i{display:inline-block;width:10px;
 height:10px;border-radius:50%;margin-right:4px}
#tip{position:fixed;display:none;pointer-events:none;background:#fff;border:1px solid #999;padding:6px;
 max-width:260px;font-size:12px;box-shadow:0 2px 6px rgba(0,0,0,.2);z-index:5}
#tip img{display:block;max-width:120px;max-height:120px}
"""

# First in <head>: counts script errors and console errors from the start
ERROR_COUNTER = """
window.reportErrors = 0;
window.onerror = function () { window.reportErrors += 1; };
(function () { var original = console.error;
  console.error = function () { window.reportErrors += 1; original.apply(console, arguments); }; })();
"""

# Last in <body>: the map's hover and colour menu, then a self-check a browser test reads from the DOM
PAGE_SCRIPT = """
(function () {
  var data = document.getElementById('map-data'), tip = document.getElementById('tip');
  if (data) {
    var map = JSON.parse(data.textContent), svg = document.querySelector('svg.map');
    svg.addEventListener('mousemove', function (event) {
      var i = event.target.getAttribute('data-i');
      if (i === null) { tip.style.display = 'none'; return; }
      var p = map.points[+i];
      tip.textContent = '';
      if (p[3]) { var img = document.createElement('img'); img.src = p[3]; img.alt = p[0]; tip.appendChild(img); }
      var lines = [p[0], p[1] !== null ? 'gold: ' + p[1] : '', p[2] !== null ? 'predicted: ' + p[2] : '',
                   p[4] !== null ? p[4] : ''];
      lines.forEach(function (line) { if (line) { var d = document.createElement('div');
        d.textContent = line; tip.appendChild(d); } });
      tip.style.left = (event.clientX + 14) + 'px'; tip.style.top = (event.clientY + 14) + 'px';
      tip.style.display = 'block';
    });
    svg.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
    var menu = document.getElementById('map-colour');
    if (menu) menu.addEventListener('change', function () {
      var fills = map.colours[menu.value];
      svg.querySelectorAll('circle').forEach(function (c) {
        c.setAttribute('fill', fills[+c.getAttribute('data-i')]); });
      document.querySelectorAll('.legend').forEach(function (l) {
        l.hidden = l.getAttribute('data-mode') !== menu.value; });
    });
  }
  function check() {
    var broken = 0;
    document.querySelectorAll('img[src]').forEach(function (img) {
      if (!img.complete || img.naturalWidth === 0) broken += 1; });
    var b = document.body.dataset;
    b.images = document.querySelectorAll('section img[src]').length;
    b.brokenImages = broken; b.consoleErrors = window.reportErrors;
    b.sections = Array.prototype.map.call(document.querySelectorAll('section[id]'),
                                          function (s) { return s.id; }).join(' ');
    b.checked = document.readyState;
  }
  function selfTest() {  // `index.html#self-test`: hover the first point, switch the colours, record both
    var dot = document.querySelector('svg.map circle'), menu = document.getElementById('map-colour');
    if (dot) {
      dot.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: 20, clientY: 20}));
      document.body.dataset.tip = tip.textContent;
    }
    if (menu) {
      menu.selectedIndex = menu.options.length - 1;
      menu.dispatchEvent(new Event('change'));
      document.body.dataset.legend = document.querySelector('.legend:not([hidden])').getAttribute('data-mode');
    }
  }
  if (location.hash === '#self-test') selfTest();
  check();
  window.addEventListener('load', check);
})();
"""


def page(title: str, subtitle: str, sections: list[Section], inputs: dict[str, str] | None = None) -> str:
    """The whole document; `title`, `subtitle` and `inputs` ({key: location}) are plain text, each
    section's body is HTML."""
    listed = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in (inputs or {}).items())
    details = f"<details><summary>inputs</summary><ul>{listed}</ul></details>" if listed else ""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    empty = "" if sections else '<section id="empty"><p class="note">No inputs were given.</p></section>'
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
            f'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">'
            f"<title>{esc(title)}</title><style>{CSS}</style><script>{ERROR_COUNTER}</script></head>"
            f'<body><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>{details}</header><nav>{nav}</nav>'
            f'{body}{empty}<div id="tip"></div><script>{PAGE_SCRIPT}</script></body></html>\n')
