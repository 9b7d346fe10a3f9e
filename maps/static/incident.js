/* One incident (/pages/incidents/{id}): facts, the loop drawn as five steps, history, photos, people,
   possible duplicates and the buttons of the actions the viewer may take now (the detail's `actions`).
   Also the helpers the review queue page shares (window.WanggeIncident). Data by URL, text nodes only. */
(function () {
  'use strict';

  var W = window.Wangge;
  var N = (W.config && W.config.incident) || {};
  var T = N.texts || {};

  function fmt(template, values) {
    return String(template || '').replace(/\{(\w+)\}/g, function (whole, key) {
      return values[key] !== undefined && values[key] !== null ? String(values[key]) : whole;
    });
  }

  function stateName(state) {
    if (state === 'closed') { return N.closed; }
    return W.name('state', state);
  }

  function metres(value) { return String(Math.round(Number(value) || 0)); }

  /* Why an incident waits for review, in Chinese. */
  function reasonTexts(incident) {
    return (incident.review_reasons || []).map(function (reason) {
      return fmt((N.reasons || {})[reason] || reason, {distance: metres(incident.outside_distance_m)});
    });
  }

  function actionLabel(action, state) {
    var next = (N.transitions || {})[state + ' ' + action];
    return fmt((N.actions || {})[action] || action, {state: stateName(state), next: stateName(next)});
  }

  /* The reviewer's form to move an incident to a nearby group grid: a list of candidates (from the
     API), or a typed code. `onDone(detail)` after the POST succeeded. */
  function reassignForm(incidentId, onDone) {
    var select = W.el('select', {'class': 'reassign-select', 'aria-label': '候选网格'},
      W.el('option', {value: '', text: T.loading}));
    var typed = W.el('input', {'class': 'reassign-code', inputmode: 'numeric', maxlength: '15',
      placeholder: '或填写15位网格编码', 'aria-label': '网格编码'});
    var submit = W.el('button', {type: 'submit', 'class': 'reassign-submit', text: '确认改派'});
    var form = W.el('form', {'class': 'reassign-form', dataset: {incidentId: incidentId}}, select, typed, submit);
    W.api('/incidents/' + incidentId + '/review/candidates').then(function (candidates) {
      select.textContent = '';
      select.appendChild(W.el('option', {value: '', text: T.pick_grid}));
      candidates.forEach(function (c) {
        var distance = c.distance_m > 0 ? fmt(T.metres, {distance: metres(c.distance_m)}) : T.inside;
        var label = fmt(T.candidate, {name: c.name, village: c.village_name || T.none, distance: distance})
          + (c.current ? T.current : '');
        select.appendChild(W.el('option', {value: c.code, disabled: c.current, text: label}));
      });
    }, W.showError);
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var code = (typed.value || select.value || '').trim();
      if (!/^\d{15}$/.test(code)) { W.showError(code ? T.code_format : T.pick_grid); return; }
      submit.disabled = true;
      W.api('/incidents/' + incidentId + '/review', {method: 'POST', json: {grid_code: code}}).then(function (d) {
        W.clearError();
        var group = (d.grid_path || []).slice(-1)[0] || {};
        W.notice(fmt(T.reassigned, {name: group.name || d.group_code, code: d.group_code}));
        onDone(d);
      }, function (err) {
        submit.disabled = false;
        var first = err && err.problem && (err.problem.errors || [])[0];
        if (first && first.type === 'not_a_candidate') { W.showError(T.not_candidate); return; }
        W.showError(err);
      });
    });
    return form;
  }

  window.WanggeIncident = {fmt: fmt, stateName: stateName, reasonTexts: reasonTexts, reassignForm: reassignForm,
    actionLabel: actionLabel, metres: metres};

  var incidentId = W.config.incident_id;
  if (!incidentId) { return; }   // the review page uses the helpers only
  var base = '/incidents/' + incidentId;
  var root = document.getElementById('incident-page');

  function byId(id) { return document.getElementById(id); }
  function clear(node) { node.textContent = ''; return node; }
  function fact(list, term, value) {
    if (value === null || value === undefined || value === '') { value = T.none; }
    list.appendChild(W.el('dt', {text: term}));
    list.appendChild(W.el('dd', null, value));
  }
  function can(permission) {
    var viewer = (W.config.shell || {}).viewer || {};
    return (viewer.permissions || []).indexOf(permission) >= 0;
  }

  function drawLoop(state) {
    var loop = clear(byId('incident-loop'));
    var steps = N.steps || [];
    var at = steps.map(function (s) { return s.state; }).indexOf(state);
    if (state === 'closed') { at = steps.length; }
    steps.forEach(function (step, i) {
      var kind = i < at ? 'done' : (i === at ? 'current' : 'todo');
      loop.appendChild(W.el('li', {'class': 'incident-step ' + kind, dataset: {state: step.state},
        'aria-current': i === at ? 'step' : null}, W.el('span', {'class': 'dot', text: String(i + 1)}), step.name));
    });
    loop.appendChild(W.el('li', {'class': 'incident-step closed ' + (state === 'closed' ? 'current' : 'todo'),
      dataset: {state: 'closed'}}, W.el('span', {'class': 'dot', text: '✓'}), N.closed));
  }

  function drawHead(d) {
    var kind = d.dispute_kind ? '·' + W.name('dispute_kind', d.dispute_kind) : '';
    byId('incident-title').textContent = '事件 #' + d.id + ' ' + W.name('category', d.category) + kind;
    drawLoop(d.state);
    var parts = ['当前环节：' + stateName(d.state)];
    if (d.deadline) { parts.push('期限：' + W.time(d.deadline)); }
    if (d.state !== 'closed') {
      parts.push(d.overdue ? T.overdue : T.on_time);
      if (d.overdue && d.escalation_level < 4) {
        parts.push(fmt(T.escalated, {level: (N.levels || {})[String(d.escalation_level)] || d.escalation_level}));
      }
    }
    if (d.satisfied !== null && d.satisfied !== undefined) {
      parts.push('回访：' + (d.satisfied ? T.satisfied_yes : T.satisfied_no));
    }
    var state = byId('incident-state');
    state.textContent = parts.join(' · ');
    state.classList.toggle('overdue', !!d.overdue);
    byId('incident-description').textContent = d.description;
    var facts = clear(byId('incident-facts'));
    fact(facts, '发生时间', W.time(d.occurred_at));
    fact(facts, '上报时间', W.time(d.reported_at));
    var place = d.place_match || d.place_query;
    fact(facts, '地点', (place ? place + ' · ' : '') + '经度 ' + Number(d.lon).toFixed(6) + '，纬度 '
      + Number(d.lat).toFixed(6));
    (d.grid_path || []).forEach(function (step) {
      fact(facts, (N.levels || {})[String(step.level)] || String(step.level), step.name + '（' + step.code + '）');
    });
    fact(facts, '上报人', d.reporter_name);
    fact(facts, '上报人电话', d.reporter_phone);
    var reasons = reasonTexts(d);
    if (reasons.length) {
      fact(facts, '待审核原因', reasons.join('；') + (d.reviewed_at ? '（' + T.reviewed + '）' : ''));
    }
  }

  function drawActions(d) {
    var box = clear(byId('incident-actions'));
    var none = byId('incident-no-actions');
    (d.actions || []).forEach(function (action) {
      box.appendChild(W.el('button', {type: 'button', 'class': 'incident-action ' + action,
        dataset: {action: action}, text: actionLabel(action, d.state), onclick: function () { act(action); }}));
    });
    none.hidden = (d.actions || []).length > 0;
    none.textContent = T.no_actions;
    var loop = (d.actions || []).filter(function (a) { return a !== 'review' && a !== 'reassign'; });
    byId('incident-note').hidden = !loop.length;
    document.querySelector('.incident-note-label').hidden = !loop.length;
  }

  function drawPhotos(d, steps) {
    var box = clear(byId('incident-photos'));
    if (!d.attachments.length) { box.appendChild(W.el('p', {'class': 'incident-muted', text: T.no_photos})); }
    d.attachments.forEach(function (a) {
      var url = base + '/attachments/' + a.id;
      var step = steps[a.event_id];
      box.appendChild(W.el('figure', {'class': 'incident-photo', dataset: {attachmentId: a.id}},
        W.el('a', {href: url, target: '_blank', rel: 'noopener'},
          W.el('img', {src: url, alt: a.filename, loading: 'lazy'})),
        W.el('figcaption', null, (step ? stateName(step.to_state) + ' · ' : '') + W.time(a.uploaded_at))));
    });
    var form = byId('incident-photo-form');
    form.hidden = !can('report_incidents');
    byId('incident-photo-step').textContent = fmt(T.photo_for_step, {state: stateName(d.state)});
  }

  function drawHistory(d) {
    var list = clear(byId('incident-history'));
    if (!d.history.length) { list.appendChild(W.el('li', {text: T.no_history})); }
    d.history.forEach(function (e) {
      var what = (N.history_actions || {})[e.action] || e.action;
      var move = e.from_state ? stateName(e.from_state) + ' → ' + stateName(e.to_state) : stateName(e.to_state);
      list.appendChild(W.el('li', {'class': 'incident-event', dataset: {action: e.action}},
        W.el('span', {'class': 'when', text: W.time(e.at)}), ' ',
        W.el('span', {'class': 'who', text: e.actor || T.system}), ' ',
        W.el('strong', {text: what}), ' ', W.el('span', {'class': 'move', text: '（' + move + '）'}),
        e.note ? W.el('p', {'class': 'note', text: e.note}) : null));
    });
  }

  function drawPeople(d) {
    var people = clear(byId('incident-assignees'));
    if (!d.assignees.length) { people.appendChild(W.el('li', {text: T.no_assignees})); }
    d.assignees.forEach(function (p) {
      people.appendChild(W.el('li', null, ((N.duties || {})[p.duty] || p.duty) + '：' + p.name + ' ',
        p.phone ? W.el('a', {href: 'tel:' + p.phone, text: p.phone}) : null));
    });
    var dups = clear(byId('incident-duplicates'));
    if (!d.possible_duplicates.length) { dups.appendChild(W.el('li', {text: T.no_duplicates})); }
    d.possible_duplicates.forEach(function (dup) {
      dups.appendChild(W.el('li', null, W.el('a', {href: '/pages/incidents/' + dup.incident_id,
        text: '事件 #' + dup.incident_id}), ' ', fmt(T.distance, {distance: metres(dup.distance_m)})));
    });
  }

  /* A small map: the point and the group grids around it (outlines by URL, no base map needed). */
  var map = null;
  function drawMap(d) {
    var box = byId('incident-map');
    if (!window.L || !box || d.lon === null || d.lat === null) { if (box) { box.hidden = true; } return; }
    var here = [d.lat, d.lon];
    if (!map) {
      map = L.map(box, {attributionControl: false, scrollWheelZoom: false}).setView(here, 15);
      var r = 0.01;
      var bbox = [d.lon - r, d.lat - r, d.lon + r, d.lat + r].map(function (v) { return v.toFixed(6); }).join(',');
      W.api('/grids?level=4&bbox=' + bbox).then(function (fc) {
        L.geoJSON(fc, {
          style: function (f) {
            var mine = f.properties.code === d.group_code;
            return {color: mine ? '#1d4f91' : '#777', weight: mine ? 3 : 1, fillOpacity: mine ? 0.12 : 0.03,
              className: mine ? 'incident-grid current' : 'incident-grid'};
          },
          onEachFeature: function (f, layer) {
            layer.bindTooltip(W.el('span', {text: f.properties.name + '（' + f.properties.code + '）'}));
          }
        }).addTo(map);
        if (map.marker) { map.marker.bringToFront(); }
      }, W.showError);
    }
    if (map.marker) { map.marker.remove(); }
    map.marker = L.circleMarker(here, {radius: 8, color: '#fff', weight: 2, fillColor: d.overdue ? '#b42318' : '#d9480f',
      fillOpacity: 1, className: 'incident-point'}).addTo(map);
  }

  var reassignBox = null;
  function draw(d) {
    var steps = {};
    d.history.forEach(function (e) { if (e.id !== null && e.id !== undefined) { steps[e.id] = e; } });
    drawHead(d);
    drawActions(d);
    drawPhotos(d, steps);
    drawHistory(d);
    drawPeople(d);
    drawMap(d);
    if (reassignBox) { reassignBox.remove(); reassignBox = null; }
    root.dataset.state = d.state;
    root.dataset.actions = (d.actions || []).join(' ');
  }

  var loads = 0;
  function load() {
    return W.api(base).then(function (d) {
      draw(d);
      loads += 1;
      root.dataset.loads = String(loads);
    }, W.showError).then(function () { document.documentElement.dataset.wanggeReady = '1'; });
  }

  function busy(on) {
    Array.prototype.forEach.call(document.querySelectorAll('.incident-action'), function (b) { b.disabled = on; });
  }

  /* Take one action: a loop step (note given), accept the assignment, or open the reassign form. */
  function act(action) {
    var state = root.dataset.state;
    if (action === 'reassign') {
      if (reassignBox) { return; }
      reassignBox = reassignForm(incidentId, function () { load(); });
      byId('incident-actions').after(reassignBox);
      return Promise.resolve();
    }
    var note = byId('incident-note').value.trim();
    var request = action === 'review'
      ? W.api(base + '/review', {method: 'POST'})
      : W.api(base + '/transitions', {method: 'POST', json: {action: action, note: note || null}});
    busy(true);
    return request.then(function () {
      W.clearError();
      W.notice(fmt(N.action_done, {label: actionLabel(action, state)}));
      byId('incident-note').value = '';
      return load();
    }, W.showError).then(function () { busy(false); });
  }

  function upload(event) {
    event.preventDefault();
    var input = byId('incident-photo-file');
    if (!input.files.length) { W.showError(T.choose_photo); return; }
    var body = new FormData();
    body.append('file', input.files[0]);
    var button = byId('incident-photo-upload');
    button.disabled = true;
    W.api(base + '/attachments', {method: 'POST', body: body}).then(function () {
      W.clearError();
      W.notice(T.uploaded);
      input.value = '';
      return load();
    }, W.showError).then(function () { button.disabled = false; });
  }

  window.WanggeIncident.act = act;
  W.ready(function () {
    byId('incident-no-actions').textContent = T.loading;
    byId('incident-photo-form').addEventListener('submit', upload);
    load();
  });
})();
