/* The flood emergency page (/maps/flood): pick or make an extent, see the water, the households in
   rescue order, shelters and routes, declare or close the emergency, print the 明白卡.
   Every layer comes by URL; data goes into the page as text nodes only (Wangge.el), never as markup. */
(function () {
  'use strict';

  var DEPTHS = [
    {key: '0-0.5', name: '水深 0–0.5 米', color: '#c6dbef'},
    {key: '0.5-1', name: '水深 0.5–1 米', color: '#6baed6'},
    {key: '1-2', name: '水深 1–2 米', color: '#2171b5'},
    {key: '>2', name: '水深 2 米以上', color: '#08306b'},
    {key: null, name: '淹没范围（无水深）', color: '#4292c6'}
  ];
  var PRIORITY = [
    {key: 'high', name: '最先转移（排序前三分之一）', color: '#cb181d'},
    {key: 'mid', name: '其次转移（中间三分之一）', color: '#fd8d3c'},
    {key: 'low', name: '再次转移（后三分之一）', color: '#fed976'}
  ];
  var SORTS = [
    {key: 'rank', name: '转移顺序'}, {key: 'depth', name: '水深（深在前）'},
    {key: 'vulnerable', name: '脆弱人员（多在前）'}, {key: 'residents', name: '人数（多在前）'},
    {key: 'distance', name: '到安置点距离（近在前）'}, {key: 'household_no', name: '户号'}
  ];
  var MODE_NAMES = {fluvial: '河道漫溢', pluvial: '积水内涝'};
  var SOURCE_NAMES = {upload: '上传', drawn: '手绘'};

  Wangge.ready(function () {
    var W = Wangge;
    var map = W.map;
    var cfg = W.config.flood || {};
    var el = W.el;
    var state = {
      choices: {}, key: null, offset: 0, sort: 'rank', grid: '', total: 0, markers: {},
      households: [], householdsTotal: 0, loads: 0
    };

    // --- the panel beside the map (below it on a phone) -----------------------------------------
    var select = el('select', {id: 'flood-extent', 'aria-label': '淹没范围'});
    var extentInfo = el('p', {id: 'flood-extent-info', 'class': 'flood-note'});
    var pick = el('section', {id: 'flood-pick'}, el('h2', {text: '淹没范围'}),
      el('label', {'for': 'flood-extent', text: '选择情景、模拟水位或已存范围'}), select, extentInfo);
    var nameInput = el('input', {id: 'flood-new-name', type: 'text', maxlength: '200', placeholder: '新范围名称（可不填）'});
    var fileInput = el('input', {id: 'flood-file', type: 'file', accept: '.geojson,.json,.kml,.gpkg,.zip'});
    var fileName = el('span', {id: 'flood-file-name', 'class': 'flood-note', text: '未选择文件'});
    var uploadButton = el('button', {id: 'flood-upload', type: 'button', text: '上传范围文件'});
    if (cfg.can_draw) {
      pick.appendChild(el('div', {id: 'flood-add', 'class': 'flood-box'},
        el('p', {'class': 'flood-note', text: '用地图左上角的多边形工具画出范围（点击最后一点与第一点重合即完成），或上传 GeoJSON、KML、GeoPackage、Shapefile（zip）文件。'}),
        nameInput, el('div', {'class': 'flood-file-row'}, fileInput,
          el('label', {'for': 'flood-file', 'class': 'flood-file-button', text: '选择文件…'}), fileName),
        uploadButton));
    }
    fileInput.addEventListener('change', function () {
      fileName.textContent = fileInput.files && fileInput.files.length ? fileInput.files[0].name : '未选择文件';
    });

    var emergencyList = el('ul', {id: 'flood-emergencies', 'class': 'flood-emergencies'});
    var titleInput = el('input', {id: 'flood-em-title', type: 'text', maxlength: '200', placeholder: '标题（默认按范围命名）'});
    var reasonInput = el('input', {id: 'flood-em-reason', type: 'text', maxlength: '2000', placeholder: '宣布原因（必填）'});
    var declareButton = el('button', {id: 'flood-declare', type: 'button', 'class': 'flood-danger', text: '按所选范围宣布应急'});
    var emergency = el('section', {id: 'flood-emergency'}, el('h2', {text: '应急状态'}), emergencyList);
    if (cfg.can_declare) {
      emergency.appendChild(el('div', {'class': 'flood-box'}, titleInput, reasonInput, declareButton));
    }

    var totals = el('p', {id: 'flood-totals', 'class': 'flood-totals'});
    var maskNote = el('p', {id: 'flood-mask-note', 'class': 'flood-note', hidden: true});
    var mapNote = el('p', {id: 'flood-map-note', 'class': 'flood-note', hidden: true});
    var gridSelect = el('select', {id: 'flood-grid', 'aria-label': '按网格筛选'});
    var sortSelect = el('select', {id: 'flood-sort', 'aria-label': '排序'},
      SORTS.map(function (s) { return el('option', {value: s.key, text: s.name}); }));
    var rows = el('tbody', {id: 'flood-rows'});
    var headers = [['priority_rank', '顺序', 'rank'], ['household_no', '户号', 'household_no'], ['head_name', '户主', null],
      ['residents', '人数', 'residents'], ['vulnerable', '脆弱', 'vulnerable'], ['depth_m', '水深', 'depth'],
      ['grid_name', '网格', null], ['shelter_name', '安置点', 'distance']];
    var headRow = el('tr', null, headers.map(function (h) {
      if (!h[2]) { return el('th', {text: h[1]}); }
      return el('th', null, el('button', {type: 'button', 'class': 'flood-sort', dataset: {sort: h[2]}, text: h[1],
        onclick: function () { setSort(h[2]); }}));
    }));
    var table = el('table', {id: 'flood-table', 'class': 'flood-table'}, el('thead', null, headRow), rows);
    var prev = el('button', {id: 'flood-prev', type: 'button', text: '上一页'});
    var next = el('button', {id: 'flood-next', type: 'button', text: '下一页'});
    var pageInfo = el('span', {id: 'flood-page'});
    var list = el('section', {id: 'flood-list'}, el('h2', {text: '受影响住户（按转移顺序）'}), totals, maskNote, mapNote,
      el('div', {'class': 'flood-controls'}, gridSelect, sortSelect),
      el('div', {'class': 'flood-table-wrap'}, table),
      el('div', {'class': 'flood-pager'}, prev, pageInfo, next));

    var printGrids = el('div', {id: 'flood-print-grids', 'class': 'flood-print-grids'});
    var printButton = el('button', {id: 'flood-print-button', type: 'button', text: '生成所选网格的明白卡（PDF）'});
    var printLinks = el('div', {id: 'flood-print-links'});
    var print = el('section', {id: 'flood-print'}, el('h2', {text: '打印明白卡'}),
      el('p', {'class': 'flood-note', text: '勾选网格（每次一个村或一个组为宜），生成每位网格员的明白卡。'}),
      printGrids, printButton, printLinks);

    var legend = el('section', {id: 'flood-legend', 'class': 'flood-legend'}, el('h2', {text: '图例'}),
      DEPTHS.slice(0, 4).map(function (d) { return swatch(d.color, d.name, 'square'); }),
      PRIORITY.map(function (p) { return swatch(p.color, p.name, 'circle'); }),
      swatch('#238b45', '安置点（有空位）', 'circle'), swatch('#737373', '安置点（已满或被淹）', 'circle'),
      swatch('#54278f', '转移路线（住户 → 安置点）', 'line'), swatch('#3182bd', '河流', 'line'),
      swatch('#8c6d31', '道路', 'line'));

    var panel = el('aside', {id: 'flood-panel', 'class': 'wangge-panel flood-panel', 'aria-label': '防汛应急'},
      pick, emergency, list, print, legend);
    document.body.appendChild(panel);
    setTimeout(function () { map.invalidateSize(); }, 0);

    function swatch(color, text, shape) {
      var mark = el('span', {'class': 'flood-swatch flood-swatch-' + shape});
      mark.style.setProperty('--swatch', color);
      return el('div', {'class': 'flood-legend-row'}, mark, el('span', {text: text}));
    }

    // --- map layers --------------------------------------------------------------------------------
    function depthColor(key) {
      for (var i = 0; i < DEPTHS.length; i++) { if (DEPTHS[i].key === key) { return DEPTHS[i].color; } }
      return DEPTHS[4].color;
    }
    var water = L.geoJSON(null, {pane: 'wanggeWater', interactive: false, style: function (f) {
      var c = depthColor(f.properties.depth_class);
      return {color: c, weight: 0.5, fillColor: c, fillOpacity: 0.55};
    }}).addTo(map);
    var network = L.geoJSON(null, {pane: 'wanggeNetwork', interactive: false, style: function (f) {
      return f.properties.kind === 'river' ? {color: '#3182bd', weight: 3, opacity: 0.9}
        : {color: '#8c6d31', weight: 1.5, opacity: 0.8};
    }}).addTo(map);
    var routes = L.geoJSON(null, {pane: 'wanggeAssignments', interactive: false,
      style: {color: '#54278f', weight: 1.2, opacity: 0.75, dashArray: '4 4'}}).addTo(map);
    var households = L.layerGroup().addTo(map);
    var shelters = L.layerGroup().addTo(map);
    var labels = L.layerGroup().addTo(map);
    var phone = window.matchMedia('(max-width: 640px)').matches;
    L.control.layers(null, {
      '水深分级': water, '道路与河流': network, '转移路线': routes, '受影响住户': households, '安置点': shelters,
      '村名': labels
    }, {collapsed: phone, position: 'topright'}).addTo(map);
    if (cfg.town_bbox) {
      var b = cfg.town_bbox;
      map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    }
    window.wanggeFlood = {water: water, network: network, routes: routes, households: households,
      shelters: shelters, labels: labels, state: state};

    // The current extent as query parameters (a named scenario by its name, anything stored by its id).
    function extentParams() {
      var c = state.choices[state.key];
      if (!c) { return null; }
      return c.scenario ? {scenario: c.scenario} : {extent: String(c.id)};
    }
    function query(params) {
      var q = new URLSearchParams();
      Object.keys(params).forEach(function (k) {
        if (params[k] !== null && params[k] !== undefined && params[k] !== '') { q.set(k, params[k]); }
      });
      return q.toString();
    }
    function viewParams() {
      var b = map.getBounds();
      return {bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (v) {
        return Math.max(-180, Math.min(180, v)).toFixed(6);
      }).join(','), zoom: String(Math.max(0, Math.min(22, Math.round(map.getZoom()))))};
    }

    var latest = {};
    // A newer request for a layer wins: an older answer arriving late is dropped, not drawn.
    function fetchLayer(name, url) {
      var ticket = (latest[name] || 0) + 1;
      latest[name] = ticket;
      return W.api(url).then(function (data) {
        if (latest[name] !== ticket) { throw {name: 'AbortError'}; }
        return data;
      });
    }
    // A superseded request is no failure of the step that made it.
    function ignoreStale(err) {
      if (err && err.name === 'AbortError') { return null; }
      throw err;
    }
    function settled(promise) { return promise.catch(ignoreStale); }

    function loadView() {
      var view = viewParams();
      var jobs = [
        fetchLayer('network', '/flood/map/network?' + query(view)).then(function (fc) {
          network.clearLayers(); network.addData(fc);
        }),
        fetchLayer('places', '/flood/map/places?' + query({bbox: view.bbox})).then(drawPlaces)
      ];
      var ext = extentParams();
      if (ext) {
        jobs.push(fetchLayer('water', '/flood/map/water?' + query(Object.assign({}, ext, view))).then(function (fc) {
          water.clearLayers(); water.addData(fc);
        }));
      }
      return Promise.all(jobs).catch(W.showError);
    }

    function drawPlaces(fc) {
      labels.clearLayers();
      var zoom = map.getZoom();
      fc.features.forEach(function (f) {
        var p = f.properties;
        if (p.kind === 'natural_village' && zoom < 14) { return; }
        var text = el('span', {'class': 'flood-label flood-label-' + p.kind, text: p.name});
        var c = f.geometry.coordinates;
        labels.addLayer(L.marker([c[1], c[0]], {pane: 'wanggeLabels', interactive: false, keyboard: false,
          icon: L.divIcon({className: 'flood-label-icon', html: text, iconSize: null})}));
      });
    }

    function priorityOf(rank) {
      var third = Math.max(1, state.householdsTotal / 3);
      return rank <= third ? PRIORITY[0] : (rank <= 2 * third ? PRIORITY[1] : PRIORITY[2]);
    }

    function row(label, value) {
      return el('tr', null, el('th', {text: label}), el('td', {text: value === null || value === undefined ? '—' : value}));
    }
    function depthText(d) { return d === null || d === undefined ? '—' : Number(d).toFixed(2) + ' 米'; }
    function shelterText(p) {
      if (!p.shelter_name) { return '无处安置'; }
      return p.shelter_name + (p.shelter_distance_m !== null && p.shelter_distance_m !== undefined
        ? '（' + Math.round(p.shelter_distance_m) + ' 米）' : '');
    }
    function householdPopup(p) {
      return el('table', {'class': 'wangge-popup-table'},
        row('转移顺序', p.priority_rank), row('户号', p.household_no), row('户主', p.head_name), row('电话', p.phone),
        row('人数', p.residents), row('脆弱人员', p.vulnerable), row('水深', depthText(p.depth_m)),
        row('网格', p.grid_name), row('网格员', [p.member_name, p.member_phone].filter(Boolean).join(' ')),
        row('安置点', shelterText(p)));
    }

    function drawHouseholds(fc) {
      households.clearLayers();
      state.markers = {};
      state.households = fc.features;
      state.householdsTotal = fc.numberMatched || fc.features.length;
      fc.features.slice().reverse().forEach(function (f) {  // the first to rescue drawn last, on top
        var p = f.properties, c = f.geometry.coordinates, pr = priorityOf(p.priority_rank);
        var marker = L.circleMarker([c[1], c[0]], {pane: 'wanggeHouseholds', radius: 6, weight: 1, color: '#333',
          fillColor: pr.color, fillOpacity: 0.95});
        marker.bindPopup(function () { return householdPopup(p); });
        households.addLayer(marker);
        state.markers[f.id] = marker;
      });
      fillGridChoices(fc.features);
      mapNote.hidden = state.householdsTotal <= fc.features.length;
      mapNote.textContent = '地图上显示转移顺序前 ' + fc.features.length + ' 户（共 ' + state.householdsTotal +
        ' 户），完整名单见下表。';
    }

    function drawShelters(fc) {
      shelters.clearLayers();
      fc.features.forEach(function (f) {
        var p = f.properties, c = f.geometry.coordinates;
        var open = p.dry !== false && (p.remaining === null || p.remaining > 0);
        var marker = L.circleMarker([c[1], c[0]], {pane: 'wanggeShelters', radius: 9, weight: 2, color: '#fff',
          fillColor: open ? '#238b45' : '#737373', fillOpacity: 0.95});
        var room = p.remaining === null ? '容量 ' + p.capacity + ' 人'
          : '剩余 ' + p.remaining + ' / 容量 ' + p.capacity + ' 人' + (p.dry === false ? '（已被淹）' : '');
        marker.bindTooltip(el('span', null, el('b', {text: p.name}), el('br'), room), {direction: 'top'});
        shelters.addLayer(marker);
      });
    }

    function fillGridChoices(features) {
      var villages = {}, groups = {};
      features.forEach(function (f) {
        var p = f.properties;
        if (p.village_code) { villages[p.village_code] = p.village_name || p.village_code; }
        if (p.grid_code) { groups[p.grid_code] = (p.village_name ? p.village_name + ' ' : '') + (p.grid_name || p.grid_code); }
      });
      var keep = state.grid;
      gridSelect.textContent = '';
      gridSelect.appendChild(el('option', {value: '', text: '全部网格'}));
      gridSelect.appendChild(el('optgroup', {label: '行政村'}, Object.keys(villages).sort().map(function (code) {
        return el('option', {value: code, text: villages[code]});
      })));
      gridSelect.appendChild(el('optgroup', {label: '村民小组网格'}, Object.keys(groups).sort().map(function (code) {
        return el('option', {value: code, text: groups[code]});
      })));
      gridSelect.value = (villages[keep] || groups[keep]) ? keep : '';
      state.grid = gridSelect.value;
      printGrids.textContent = '';
      Object.keys(villages).sort().forEach(function (code) {
        printGrids.appendChild(el('label', {'class': 'flood-check'},
          el('input', {type: 'checkbox', value: code, dataset: {name: villages[code]}}), villages[code]));
      });
      if (!Object.keys(villages).length) {
        printGrids.appendChild(el('p', {'class': 'flood-note', text: '此范围内没有您可查看的住户。'}));
      }
    }

    // --- the list ----------------------------------------------------------------------------------
    function loadList() {
      var ext = extentParams();
      if (!ext) { return Promise.resolve(); }
      var params = Object.assign({}, ext, {limit: String(cfg.page_size || 20), offset: String(state.offset),
        grid_code: state.grid, sort: state.sort === 'rank' ? '' : state.sort});
      return fetchLayer('list', '/flood/households?' + query(params)).then(function (page) {
        state.total = page.total;
        drawRows(page);
        drawTotals(page);
        document.documentElement.dataset.floodList = state.key + '|' + page.total + '|' + state.offset;
      });
    }

    function drawRows(page) {
      rows.textContent = '';
      page.items.forEach(function (h) {
        var tr = el('tr', {tabindex: '0', dataset: {household: h.id}, title: '在地图上查看'},
          el('td', {text: h.priority_rank}), el('td', {text: h.household_no}), el('td', {text: h.head_name || '—'}),
          el('td', {text: h.residents}), el('td', {text: h.vulnerable}), el('td', {text: depthText(h.depth_m)}),
          el('td', {text: h.grid_name || '—'}), el('td', {text: shelterText(h)}));
        tr.addEventListener('click', function () { flyTo(h); });
        tr.addEventListener('keydown', function (e) { if (e.key === 'Enter') { flyTo(h); } });
        rows.appendChild(tr);
      });
      if (!page.items.length) {
        var hint = (W.config.shell.viewer || {}).role === 'emergency'
          ? '没有可显示的住户：应急队伍在宣布应急后才能查看范围内的住户。' : '此范围内没有您可查看的住户。';
        rows.appendChild(el('tr', null, el('td', {colspan: String(headers.length), text: hint})));
      }
      var size = cfg.page_size || 20;
      var pages = Math.max(1, Math.ceil(page.total / size));
      pageInfo.textContent = '第 ' + (Math.floor(state.offset / size) + 1) + ' / ' + pages + ' 页';
      prev.disabled = state.offset <= 0;
      next.disabled = state.offset + size >= page.total;
      maskNote.hidden = !page.items.some(function (h) { return h.personal_fields === 'masked'; });
      maskNote.textContent = '姓名、电话和门牌号按您的权限隐藏（宣布应急后，范围内住户对指挥中心显示）。';
      Array.prototype.forEach.call(headRow.querySelectorAll('button'), function (b) {
        b.classList.toggle('active', b.dataset.sort === state.sort);
      });
    }

    function drawTotals(page) {
      var t = page.totals || {};
      totals.textContent = '共 ' + page.total + ' 户' + (state.grid ? '（所选网格）' : '') + ' · 范围内 ' +
        (t.households || 0) + ' 户 ' + (t.residents || 0) + ' 人：老人 ' + (t.elderly || 0) + '、儿童 ' +
        (t.children || 0) + '、残疾 ' + (t.disabled || 0) + '、孕妇 ' + (t.pregnant || 0) + '、卧床 ' +
        (t.bedridden || 0) + '；无处安置 ' + (t.unplaced_households || 0) + ' 户';
    }

    function flyTo(h) {
      var target = [h.lat, h.lon];
      map.flyTo(target, Math.max(map.getZoom(), 17), {duration: 0.6});
      map.once('moveend', function () {
        var marker = state.markers[h.id];
        if (marker) { marker.openPopup(); }
        else { L.popup().setLatLng(target).setContent(householdPopup(h)).openOn(map); }
      });
      Array.prototype.forEach.call(rows.children, function (tr) {
        tr.classList.toggle('selected', tr.dataset.household === String(h.id));
      });
    }

    function setSort(key) {
      state.sort = key; sortSelect.value = key; state.offset = 0;
      settled(loadList()).catch(W.showError);
    }
    sortSelect.addEventListener('change', function () { setSort(sortSelect.value); });
    gridSelect.addEventListener('change', function () {
      state.grid = gridSelect.value; state.offset = 0; settled(loadList()).catch(W.showError);
    });
    prev.addEventListener('click', function () {
      state.offset = Math.max(0, state.offset - (cfg.page_size || 20)); settled(loadList()).catch(W.showError);
    });
    next.addEventListener('click', function () {
      state.offset += cfg.page_size || 20; settled(loadList()).catch(W.showError);
    });

    // --- choosing an extent ----------------------------------------------------------------------
    function loadChoices(selectKey) {
      return Promise.all([W.api('/flood/scenarios'), W.api('/flood/extents')]).then(function (answers) {
        var scenarios = answers[0], extents = answers[1];
        state.choices = {};
        select.textContent = '';
        var named = el('optgroup', {label: '情景'});
        scenarios.named.forEach(function (s) {
          var key = 'scenario:' + s.name;
          state.choices[key] = {scenario: s.name, label: s.title};
          named.appendChild(el('option', {value: key, text: s.title}));
        });
        var modelled = el('optgroup', {label: '模拟水位'});
        var saved = el('optgroup', {label: '上传或手绘的范围'});
        extents.slice().sort(function (a, b) {
          return a.source === 'model' && b.source === 'model' ? (a.mode + a.stage_m).localeCompare(b.mode + b.stage_m)
            : 0;
        }).forEach(function (e) {
          var key = 'extent:' + e.id;
          var label = e.source === 'model'
            ? '水位 ' + e.stage_m + ' 米（' + (MODE_NAMES[e.mode] || e.mode) + '）'
            : (SOURCE_NAMES[e.source] || e.source) + '：' + e.name;
          state.choices[key] = {id: e.id, label: label, source: e.source};
          (e.source === 'model' ? modelled : saved).appendChild(el('option', {value: key, text: label}));
        });
        [named, modelled, saved].forEach(function (g) { if (g.children.length) { select.appendChild(g); } });
        var key = selectKey && state.choices[selectKey] ? selectKey : Object.keys(state.choices)[0];
        if (!key) {
          extentInfo.textContent = '还没有淹没范围：请导入高程数据计算水位，或上传、手绘一个范围。';
          return null;
        }
        select.value = key;
        return choose(key);
      });
    }

    function choose(key) {
      state.key = key; state.offset = 0; state.grid = '';
      var c = state.choices[key];
      extentInfo.textContent = '当前：' + c.label;
      printLinks.textContent = '';
      var ext = extentParams();
      return Promise.all([
        settled(loadList()),
        loadView(),
        fetchLayer('households', '/flood/households?' + query(Object.assign({}, ext, {format: 'geojson',
          limit: String(cfg.map_households_limit || 2000)}))).then(drawHouseholds).catch(ignoreStale),
        fetchLayer('routes', '/flood/map/assignments?' + query(Object.assign({}, ext, {
          limit: String(cfg.map_households_limit || 2000)}))).then(function (fc) {
          routes.clearLayers(); routes.addData(fc);
        }).catch(ignoreStale),
        fetchLayer('shelters', '/flood/map/shelters?' + query(ext)).then(drawShelters).catch(ignoreStale)
      ]);
    }
    select.addEventListener('change', function () {
      W.clearError();
      choose(select.value).catch(W.showError);
    });

    // --- making an extent: drawn on the map or uploaded --------------------------------------------
    function newName(prefix) {
      var typed = nameInput.value.trim();
      return typed || prefix + ' ' + W.time(new Date().toISOString());
    }
    function adopt(created, what) {
      nameInput.value = '';
      return loadChoices('extent:' + created.id).then(function () {
        W.notice('已保存' + what + '“' + created.name + '”，受影响住户 ' + state.total + ' 户。');
      });
    }
    map.on('draw:created', function (e) {
      var geometry = e.layer.toGeoJSON().geometry;
      W.api('/flood/extents/drawn', {method: 'POST', json: {name: newName('手绘范围'), geometry: geometry}})
        .then(function (created) {
          if (window.wanggeFloodDrawn) { window.wanggeFloodDrawn.clearLayers(); }
          return adopt(created, '手绘范围');
        })
        .catch(function (err) {
          if (window.wanggeFloodDrawn) { window.wanggeFloodDrawn.clearLayers(); }
          W.showError(err);
        });
    });
    uploadButton.addEventListener('click', function () {
      if (!fileInput.files || !fileInput.files.length) { W.showError('请先选择要上传的范围文件。'); return; }
      var form = new FormData();
      form.append('file', fileInput.files[0]);
      var typed = nameInput.value.trim();
      if (typed) { form.append('name', typed); }
      uploadButton.disabled = true;
      W.api('/flood/extents', {method: 'POST', body: form}).then(function (created) {
        fileInput.value = ''; fileName.textContent = '未选择文件';
        return adopt(created, '上传范围');
      }).catch(W.showError).then(function () { uploadButton.disabled = false; });
    });

    // --- the emergency -----------------------------------------------------------------------------
    function loadEmergencies() {
      return W.api('/emergencies?active=true').then(function (items) {
        emergencyList.textContent = '';
        if (!items.length) {
          emergencyList.appendChild(el('li', {'class': 'flood-note', text: '当前没有生效的应急状态。'}));
        }
        items.forEach(function (e) {
          var li = el('li', {'class': 'flood-emergency', dataset: {emergency: e.id}},
            el('b', {text: e.title}), el('br'),
            '宣布：' + W.time(e.declared_at) + '，' + e.declared_by, el('br'), '原因：' + e.reason);
          if (cfg.can_declare) {
            li.appendChild(el('button', {type: 'button', 'class': 'flood-close', dataset: {emergency: e.id},
              text: '结束应急', onclick: function () { closeEmergency(e); }}));
          }
          emergencyList.appendChild(li);
        });
      });
    }

    function closeEmergency(e) {
      var reason = window.prompt('确定结束应急“' + e.title + '”吗？结束后，应急队伍将不能再查看该范围内住户的个人信息。\n请填写结束原因：', '水已退去');
      if (reason === null) { return; }
      if (!reason.trim()) { W.showError('请填写结束应急的原因。'); return; }
      W.api('/emergencies/' + e.id + '/close', {method: 'POST', json: {reason: reason.trim()}}).then(function () {
        W.notice('已结束应急“' + e.title + '”。');
        return Promise.all([loadEmergencies(), choose(state.key)]);
      }).catch(W.showError);
    }

    declareButton.addEventListener('click', function () {
      var c = state.choices[state.key];
      if (!c) { W.showError('请先选择淹没范围。'); return; }
      var reason = reasonInput.value.trim();
      if (!reason) { W.showError('请填写宣布应急的原因。'); reasonInput.focus(); return; }
      var title = titleInput.value.trim() || '防汛应急：' + c.label;
      if (!window.confirm('确定按“' + c.label + '”宣布应急吗？\n宣布后，应急队伍和指挥中心可查看该范围内住户的姓名和电话，每次查看都会记录。')) {
        return;
      }
      var body = {title: title, reason: reason};
      if (c.scenario) { body.scenario = c.scenario; } else { body.extent_id = c.id; }
      declareButton.disabled = true;
      W.api('/emergencies', {method: 'POST', json: body}).then(function (created) {
        reasonInput.value = ''; titleInput.value = '';
        W.notice('已宣布应急“' + created.title + '”。');
        return Promise.all([loadEmergencies(), choose(state.key)]);
      }).catch(W.showError).then(function () { declareButton.disabled = false; });
    });

    // --- the 明白卡 ------------------------------------------------------------------------------------
    printButton.addEventListener('click', function () {
      var checked = Array.prototype.filter.call(printGrids.querySelectorAll('input[type=checkbox]'),
        function (box) { return box.checked; });
      printLinks.textContent = '';
      if (!checked.length) { W.showError('请先勾选要打印的网格。'); return; }
      var links = checked.map(function (box) {
        var href = '/flood/checklist?' + query(Object.assign({}, extentParams(), {grid_code: box.value, format: 'pdf'}));
        return el('a', {href: href, download: '明白卡-' + box.value + '.pdf', 'class': 'flood-print-link',
          text: '下载 ' + box.dataset.name + ' 的明白卡（PDF）'});
      });
      links.forEach(function (a) { printLinks.appendChild(el('div', null, a)); });
      if (links.length === 1) { links[0].click(); }
    });

    // --- Leaflet.draw in Chinese ---------------------------------------------------------------------
    if (L.drawLocal) {
      var poly = L.drawLocal.draw.handlers.polygon.tooltip;
      poly.start = '点击地图，开始画淹没范围'; poly.cont = '继续点击，画下一个点'; poly.end = '点击第一个点，完成范围';
      L.drawLocal.draw.toolbar.actions.text = '取消'; L.drawLocal.draw.toolbar.actions.title = '取消画图';
      L.drawLocal.draw.toolbar.finish.text = '完成'; L.drawLocal.draw.toolbar.finish.title = '完成画图';
      L.drawLocal.draw.toolbar.undo.text = '删除上一点'; L.drawLocal.draw.toolbar.undo.title = '删除上一个点';
      var button = document.querySelector('.leaflet-draw-draw-polygon');
      if (button) { button.title = '画出淹没范围'; }
      Array.prototype.forEach.call(document.querySelectorAll('.leaflet-draw-actions a'), function (a) {
        var t = {'Cancel drawing': ['取消', '取消画图'], 'Finish drawing': ['完成', '完成画图'],
          'Delete last point drawn': ['删除上一点', '删除上一个点']}[a.title];
        if (t) { a.textContent = t[0]; a.title = t[1]; }
      });
    }

    var moveTimer = null;
    map.on('moveend', function () {
      clearTimeout(moveTimer);
      moveTimer = setTimeout(loadView, 200);
    });

    Promise.all([loadChoices(null), loadEmergencies()]).then(function () {
      document.documentElement.dataset.floodReady = '1';
    }).catch(function (err) {
      W.showError(err);
      document.documentElement.dataset.floodReady = 'error';
    });
  });
})();
