"""The report's stylesheet, inlined into the page: readable on a laptop and a phone, prints cleanly."""

CSS = """
:root { --ink: #1d232b; --muted: #5b6672; --line: #d9dee4; --soft: #f4f6f8; --accent: #1f5fa8; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
       font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 1.2rem 1.2rem 3rem; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 1rem; }
h1 { font-size: 1.7rem; margin: .3rem 0 .2rem; overflow-wrap: anywhere; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 1px solid var(--line);
     overflow-wrap: anywhere; }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .5rem; }
p.lead { color: var(--muted); margin: .2rem 0 .8rem; overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(8.5rem, 1fr)); gap: .6rem; margin: .8rem 0; }
.card { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .5rem .7rem; }
.card .v { font-size: 1.3rem; font-weight: 600; }
.card .k { font-size: .8rem; color: var(--muted); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .5rem 0; }
table { border-collapse: collapse; font-size: .92rem; }
th, td { border-bottom: 1px solid var(--line); padding: .28rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: anywhere; min-width: 7rem; max-width: 22rem; }
td.acc { white-space: nowrap; }
.bar { display: inline-block; height: .55rem; background: var(--accent); border-radius: 2px; vertical-align: middle; }
dl.kv { display: grid; grid-template-columns: minmax(8rem, max-content) 1fr; gap: .15rem 1rem; margin: .4rem 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
figure { margin: .6rem 0 1rem; }
figure .frame { overflow-x: auto; -webkit-overflow-scrolling: touch; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .3rem; }
img.strip { image-rendering: pixelated; max-width: 100%; height: auto; display: block; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 4px; padding: .6rem .8rem;
      overflow-x: auto; font-size: .8rem; line-height: 1.35; }
code { font-size: .9em; overflow-wrap: anywhere; }
.note { background: #fff8e1; border-left: 4px solid #e0a800; padding: .4rem .7rem; margin: .6rem 0;
        overflow-wrap: anywhere; }
nav.toc { font-size: .92rem; margin: .5rem 0 1rem; }
nav.toc a { color: var(--accent); margin-right: .9rem; white-space: nowrap; }
footer { color: var(--muted); font-size: .82rem; margin-top: 3rem; border-top: 1px solid var(--line);
         padding-top: .6rem; overflow-wrap: anywhere; }
@media (max-width: 640px) {
  body { font-size: 15px; }
  main { padding: .8rem .7rem 2rem; }
  h1 { font-size: 1.35rem; }
  h2 { font-size: 1.15rem; }
  dl.kv { grid-template-columns: minmax(5rem, 38%) 1fr; font-size: .9rem; }
  dl.kv dt { overflow-wrap: anywhere; }
  table { font-size: .85rem; }
  /* a table fits the screen: names and headings wrap (numbers stay whole) rather than hide past the edge */
  table { font-size: .8rem; }
  th, td { padding: .22rem .3rem; }
  th.n { white-space: normal; }
  td.name { min-width: 0; max-width: 9rem; }
  /* a two-panel figure shows whole at the screen's width (zoom in for detail), never cut off */
  figure.wide img { max-width: 100%; width: auto; }
}
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  a { color: inherit; text-decoration: none; }
  section, figure, table, pre, .cards { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  .run + .run { break-before: page; }
  .scroll, figure .frame { overflow: visible; }
  figure.wide img { max-width: 100%; width: auto; }
  pre { white-space: pre-wrap; }
}
"""
