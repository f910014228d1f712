/**
 * The rating page: one HTML file, its script and its style, served as they are (no build step, no
 * framework). Everything it shows comes from the JSON API and is put on the page as text
 * (`textContent`), never as HTML, so answers cannot inject markup. It never learns system names.
 *
 * Keys: 1–9 and 0 (= 10) score the focused row, a / b / t choose in a pairwise item, up / down
 * (or k / j) move between rows, right / left (or n / p, Enter) go to the next / previous item,
 * ? shows the keys.
 */

export const PAGE_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rpv rate</title>
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header>
  <strong>rpv rate</strong>
  <span id="who"></span>
  <span id="progress-text"></span>
  <progress id="progress" max="1" value="0"></progress>
  <button id="help-button" type="button" title="Keyboard shortcuts (?)">?</button>
</header>
<section id="login" hidden>
  <form id="login-form">
    <label for="name">Your name</label>
    <input id="name" autocomplete="name" maxlength="64" required>
    <button type="submit">Start rating</button>
  </form>
  <p class="note">Ratings are saved as you go; come back with the same name to continue.</p>
</section>
<section id="help" hidden>
  <table>
    <tr><td><kbd>1</kbd>–<kbd>9</kbd>, <kbd>0</kbd></td><td>score the highlighted row 1–9, 10</td></tr>
    <tr><td><kbd>a</kbd> <kbd>b</kbd> <kbd>t</kbd></td><td>pairwise: answer A better, B better, tie</td></tr>
    <tr><td><kbd>↓</kbd> <kbd>↑</kbd> (<kbd>j</kbd> <kbd>k</kbd>)</td><td>next / previous row</td></tr>
    <tr><td><kbd>→</kbd> <kbd>←</kbd> (<kbd>n</kbd> <kbd>p</kbd>, <kbd>Enter</kbd>)</td><td>next / previous item</td></tr>
  </table>
</section>
<main id="rate" hidden>
  <section id="context">
    <div id="media"></div>
    <h2 id="role"></h2>
    <details id="profile-box"><summary>Role profile</summary><p id="profile"></p></details>
    <p id="summary"></p>
    <ol id="history"></ol>
    <div id="question-box"><div class="speaker" id="question-speaker"></div><p id="question"></p></div>
  </section>
  <section id="judging">
    <div id="answers"></div>
    <p id="mode-note" class="note"></p>
    <div id="metrics"></div>
    <nav>
      <button id="prev" type="button">← Previous</button>
      <span id="item-pos"></span>
      <button id="next" type="button">Next →</button>
    </nav>
  </section>
</main>
<section id="finished" hidden><h2>All items rated. Thank you!</h2><p>You can still go back and change a rating.</p><button id="review" type="button">Review items</button></section>
<div id="status" role="status" aria-live="polite"></div>
</body>
</html>
`;

export const PAGE_CSS = String.raw`
:root { --accent: #2557a7; --done: #1b7f3b; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, "Noto Sans", "Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Micro Hei", "PingFang SC", "Microsoft YaHei", sans-serif; color: #1d1d1f; background: #f6f6f8; }
header { display: flex; gap: 1em; align-items: center; padding: .5em 1em; background: #fff; border-bottom: 1px solid #ddd; position: sticky; top: 0; z-index: 1; }
header progress { flex: 1; max-width: 30em; }
#help-button { margin-left: auto; }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.2fr); gap: 1em; padding: 1em; }
section#login, section#help, section#finished { max-width: 40em; margin: 2em auto; background: #fff; padding: 1.5em; border-radius: 8px; }
#context, #judging { background: #fff; border-radius: 8px; padding: 1em; }
#media video, #media img { width: 100%; max-height: 22em; background: #000; border-radius: 4px; }
#media .frames { display: flex; flex-wrap: wrap; gap: 6px; }
#media figure { margin: 0; text-align: center; font-size: 12px; color: #555; }
#media canvas { width: 64px; height: 64px; image-rendering: pixelated; border: 1px solid #ccc; }
.note { color: #666; font-size: 13px; }
.problem { color: var(--bad); }
#history { padding-left: 1.2em; }
#history li, #question-box { margin: .3em 0; }
.speaker { font-weight: 600; }
#question-box { border-left: 3px solid var(--accent); padding-left: .6em; }
p, li, .answer-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.answer { border: 1px solid #ccd; border-radius: 6px; padding: .5em .8em; margin-bottom: .6em; }
.answer h3 { margin: 0 0 .3em; font-size: 14px; color: var(--accent); }
.metric { border-top: 1px solid #eee; padding: .4em 0; }
.metric h4 { margin: 0; font-size: 14px; }
.metric .rubric { margin: 0 0 .3em; }
.row { display: flex; align-items: center; gap: .3em; padding: .15em .3em; border-radius: 4px; }
.row.focus { background: #e8eefb; outline: 2px solid var(--accent); }
.row .label { width: 5em; font-size: 13px; color: #444; }
.row button { min-width: 2.2em; padding: .2em .4em; border: 1px solid #bbc; background: #fff; border-radius: 4px; cursor: pointer; font: inherit; }
.row button.chosen { background: var(--accent); color: #fff; border-color: var(--accent); }
.row .mark { width: 1.2em; color: var(--done); }
nav { display: flex; justify-content: space-between; align-items: center; margin-top: 1em; }
#status { position: fixed; bottom: 1em; right: 1em; padding: .4em .8em; border-radius: 4px; background: #333; color: #fff; font-size: 13px; opacity: .9; }
#status:empty { display: none; }
#status.error { background: var(--bad); }
kbd { border: 1px solid #aaa; border-bottom-width: 2px; border-radius: 3px; padding: 0 .3em; font-size: 12px; background: #fff; }
`;

export const PAGE_JS = String.raw`'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var state = { config: null, rater: null, token: null, progress: null, position: 0, view: null, rows: [], focus: 0 };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) setText(e, text);
    return e;
  }
  // Text only, never HTML; Chinese text gets lang=zh so the right glyphs are picked.
  function setText(e, text) {
    e.textContent = text;
    if (/[\u3400-\u9fff]/.test(text)) e.lang = 'zh'; else e.removeAttribute('lang');
  }
  function status(text, isError) {
    var s = $('status');
    s.textContent = text || '';
    s.className = isError ? 'error' : '';
  }
  function withAuth(url) {
    var sep = url.indexOf('?') < 0 ? '?' : '&';
    if (state.token) return url + sep + 'token=' + encodeURIComponent(state.token);
    return url + sep + 'rater=' + encodeURIComponent(state.rater);
  }
  function api(method, url, body) {
    var opts = { method: method, headers: {} };
    if (body !== undefined) { opts.headers['content-type'] = 'application/json'; opts.body = JSON.stringify(body); }
    if (state.token) opts.headers.authorization = 'Bearer ' + state.token;
    return fetch(url, opts).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) throw new Error(data && data.error ? data.error : 'HTTP ' + res.status);
        return data;
      });
    });
  }

  function start() {
    var params = new URLSearchParams(location.search);
    var token = params.get('token');
    if (token) { localStorage.setItem('rpv-rate-token', token); history.replaceState(null, '', location.pathname); }
    state.token = token || localStorage.getItem('rpv-rate-token');
    api('GET', '/api/config').then(function (config) {
      state.config = config;
      if (state.token) return begin(null);
      var name = localStorage.getItem('rpv-rate-rater');
      if (name) return begin(name);
      if (config.tokens) { status('This page needs your personal link (with its token).', true); return; }
      $('login').hidden = false;
      $('name').focus();
    }).catch(function (e) { status(e.message, true); });
  }

  function begin(name) {
    state.rater = name;
    var url = state.token ? '/api/progress' : '/api/progress?rater=' + encodeURIComponent(name);
    return api('GET', url).then(function (progress) {
      state.rater = progress.rater;
      if (!state.token) localStorage.setItem('rpv-rate-rater', progress.rater);
      $('login').hidden = true;
      setText($('who'), progress.rater);
      showProgress(progress);
      if (progress.next === null) return finished();
      return openItem(progress.next);
    }).catch(function (e) {
      status(e.message, true);
      // A token or name the server no longer accepts: forget it, so the page can ask again.
      if (state.token) { localStorage.removeItem('rpv-rate-token'); state.token = null; }
      else localStorage.removeItem('rpv-rate-rater');
      if (!state.config.tokens) $('login').hidden = false;
    });
  }

  function showProgress(progress) {
    state.progress = progress;
    var rated = 0, needed = 0;
    progress.items.forEach(function (i) { rated += i.rated; needed += i.needed; });
    setText($('progress-text'), progress.done + ' / ' + progress.total + ' items · ' + rated + ' / ' + needed + ' ratings');
    $('progress').max = needed || 1;
    $('progress').value = rated;
  }

  function refreshProgress() {
    return api('GET', withAuth('/api/progress')).then(showProgress);
  }

  function finished() {
    $('rate').hidden = true;
    $('finished').hidden = false;
  }

  function openItem(position) {
    var items = state.progress.items;
    position = Math.max(0, Math.min(items.length - 1, position));
    state.position = position;
    var id = items[position].item;
    return api('GET', withAuth('/api/item?item=' + encodeURIComponent(id))).then(function (view) {
      state.view = view;
      render(view);
      $('finished').hidden = true;
      $('rate').hidden = false;
      window.scrollTo(0, 0);
    }).catch(function (e) { status(e.message, true); });
  }

  function renderMedia(view) {
    var box = $('media');
    box.textContent = '';
    var m = view.media;
    var src = withAuth('/api/media?item=' + encodeURIComponent(view.item));
    if (m.kind === 'video') {
      var v = el('video');
      v.controls = true; v.preload = 'metadata'; v.src = src;
      box.appendChild(v);
    } else if (m.kind === 'image') {
      var img = el('img');
      img.alt = 'image of the conversation'; img.src = src;
      box.appendChild(img);
    } else if (m.kind === 'frames') {
      api('GET', withAuth('/api/frames?item=' + encodeURIComponent(view.item))).then(function (f) {
        if (state.view !== view) return;
        var strip = el('div', 'frames');
        if (f.cells === 0) { box.appendChild(el('p', 'note', f.note)); return; }
        f.frames.forEach(function (rgb, i) {
          var fig = el('figure');
          var c = el('canvas');
          c.width = f.cells; c.height = f.cells;
          var ctx = c.getContext('2d');
          var img = ctx.createImageData(f.cells, f.cells);
          for (var p = 0; p < f.cells * f.cells; p++) {
            img.data[p * 4] = rgb[p * 3]; img.data[p * 4 + 1] = rgb[p * 3 + 1]; img.data[p * 4 + 2] = rgb[p * 3 + 2]; img.data[p * 4 + 3] = 255;
          }
          ctx.putImageData(img, 0, 0);
          fig.appendChild(c);
          fig.appendChild(el('figcaption', null, f.times[i].toFixed(1) + ' s'));
          strip.appendChild(fig);
        });
        box.appendChild(el('p', 'note', 'Sampled frames (colours of each frame, from the shards):'));
        box.appendChild(strip);
      }).catch(function (e) { box.appendChild(el('p', 'problem', e.message)); });
    } else {
      box.appendChild(el('p', m.problem ? 'problem' : 'note', m.problem ? 'Video unavailable: ' + m.problem : 'No video for this item.'));
    }
  }

  function render(view) {
    renderMedia(view);
    setText($('role'), view.role + (view.script ? ' · ' + view.script : ''));
    $('profile-box').hidden = !view.profile;
    setText($('profile'), view.profile || '');
    $('summary').hidden = !view.summary;
    setText($('summary'), view.summary ? 'Video: ' + view.summary : '');
    var hist = $('history');
    hist.textContent = '';
    view.history.forEach(function (t) {
      var li = el('li');
      li.appendChild(el('span', 'speaker', t.speaker + ': '));
      li.appendChild(el('span', null, t.text));
      hist.appendChild(li);
    });
    var other = view.otherParty.charAt(0).toUpperCase() + view.otherParty.slice(1);
    setText($('question-speaker'), view.history.length || view.profile || view.summary ? other + ' says:' : 'The question:');
    setText($('question'), view.question);

    var answers = $('answers');
    answers.textContent = '';
    view.answers.forEach(function (a) {
      var card = el('div', 'answer');
      card.appendChild(el('h3', null, view.answers.length > 1 ? 'Answer ' + a.label : 'Answer of ' + view.role));
      card.appendChild(el('div', 'answer-text', a.text));
      answers.appendChild(card);
    });
    setText($('mode-note'), view.mode === 'pairwise' ? 'For each aspect, which answer is better? (a / b / t)' : 'Score each aspect from 1 (poor) to 10 (excellent).');

    var metrics = $('metrics');
    metrics.textContent = '';
    state.rows = [];
    view.metrics.forEach(function (m) {
      var box = el('div', 'metric');
      box.appendChild(el('h4', null, m.name));
      box.appendChild(el('p', 'rubric note', m.rubric));
      var labels = view.mode === 'pairwise' ? [null] : view.answers.map(function (a) { return a.label; });
      labels.forEach(function (label) {
        var row = el('div', 'row');
        var rowInfo = { metric: m.name, label: label, element: row, buttons: {} };
        row.appendChild(el('span', 'mark'));
        if (view.answers.length > 1 && label) row.appendChild(el('span', 'label', 'Answer ' + label));
        var choices = view.mode === 'pairwise' ? ['A', 'B', 'tie'] : [];
        if (view.mode !== 'pairwise') for (var s = state.config.scale[0]; s <= state.config.scale[1]; s++) choices.push(s);
        choices.forEach(function (c) {
          var b = el('button', null, view.mode === 'pairwise' ? (c === 'tie' ? 'Tie' : c + ' better') : String(c));
          b.type = 'button';
          b.dataset.value = String(c);
          b.addEventListener('click', function () { focusRow(state.rows.indexOf(rowInfo)); save(rowInfo, c); });
          rowInfo.buttons[String(c)] = b;
          row.appendChild(b);
        });
        box.appendChild(row);
        state.rows.push(rowInfo);
        markRow(rowInfo, current(view, rowInfo));
      });
      metrics.appendChild(box);
    });
    setText($('item-pos'), 'Item ' + (view.position + 1) + ' of ' + view.total);
    $('prev').disabled = view.position === 0;
    var first = state.rows.findIndex(function (r) { return current(view, r) === undefined; });
    focusRow(first < 0 ? 0 : first);
  }

  function current(view, row) {
    var r = view.ratings[row.metric];
    if (r === undefined) return undefined;
    return row.label === null ? r : r[row.label];
  }

  function markRow(row, value) {
    Object.keys(row.buttons).forEach(function (k) { row.buttons[k].classList.toggle('chosen', value !== undefined && String(value) === k); });
    row.element.firstChild.textContent = value !== undefined ? '✓' : '';
  }

  function focusRow(i) {
    if (!state.rows.length) return;
    state.focus = Math.max(0, Math.min(state.rows.length - 1, i));
    state.rows.forEach(function (r, k) { r.element.classList.toggle('focus', k === state.focus); });
    var e = state.rows[state.focus].element;
    if (e.scrollIntoView) e.scrollIntoView({ block: 'nearest' });
  }

  function save(row, value) {
    var view = state.view;
    var body = { rater: state.rater, item: view.item, metric: row.metric, score: value };
    if (view.mode !== 'pairwise' && view.answers.length > 1) body.answer = row.label;
    status('saving…');
    return api('POST', '/api/ratings', body).then(function () {
      if (row.label === null) view.ratings[row.metric] = value;
      else (view.ratings[row.metric] = view.ratings[row.metric] || {})[row.label] = value;
      markRow(row, value);
      status('saved ✓');
      var next = state.rows.findIndex(function (r, k) { return k > state.rows.indexOf(row) && current(view, r) === undefined; });
      if (next >= 0) focusRow(next);
      return refreshProgress();
    }).catch(function (e) { status('not saved: ' + e.message, true); });
  }

  function go(delta) {
    var p = state.position + delta;
    if (p >= state.progress.items.length) {
      return refreshProgress().then(function () { if (state.progress.next === null) finished(); else openItem(state.progress.next); });
    }
    if (p >= 0) openItem(p);
  }

  document.addEventListener('keydown', function (ev) {
    if (ev.target && (ev.target.tagName === 'INPUT' || ev.target.tagName === 'TEXTAREA') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === '?') { $('help').hidden = !$('help').hidden; return; }
    if ($('rate').hidden || !state.view) return;
    var row = state.rows[state.focus];
    var k = ev.key;
    if (/^[0-9]$/.test(k) && state.view.mode !== 'pairwise') { save(row, k === '0' ? 10 : Number(k)); ev.preventDefault(); }
    else if ((k === 'a' || k === 'b' || k === 't') && state.view.mode === 'pairwise') { save(row, k === 't' ? 'tie' : k.toUpperCase()); ev.preventDefault(); }
    else if (k === 'ArrowDown' || k === 'j') { focusRow(state.focus + 1); ev.preventDefault(); }
    else if (k === 'ArrowUp' || k === 'k') { focusRow(state.focus - 1); ev.preventDefault(); }
    else if (k === 'ArrowRight' || k === 'n' || k === 'Enter') { go(1); ev.preventDefault(); }
    else if (k === 'ArrowLeft' || k === 'p') { go(-1); ev.preventDefault(); }
  });

  document.addEventListener('DOMContentLoaded', function () {
    $('login-form').addEventListener('submit', function (ev) { ev.preventDefault(); begin($('name').value.trim()); });
    $('help-button').addEventListener('click', function () { $('help').hidden = !$('help').hidden; });
    $('prev').addEventListener('click', function () { go(-1); });
    $('next').addEventListener('click', function () { go(1); });
    $('review').addEventListener('click', function () { openItem(0); });
    start();
  });
})();
`;
