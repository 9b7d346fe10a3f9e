/* Wangge.live(url, onEvent, {onStatus}): the live incident feed (server-sent events) for a page.
 *
 * Wraps EventSource: the browser reconnects by itself and sends Last-Event-ID, so nothing is lost
 * across a dropped connection or the server ending a stream. When the browser gives up (an error
 * answer such as 401 or 429), this retries with a growing pause, resuming from the last event
 * (?after=). onEvent(data, id) gets each event's parsed JSON (see GET /events/incidents);
 * onStatus(state) hears "open", "reconnecting", "failed" (gave up for now, retrying later) and
 * "closed" (by close(), or the login is gone: the shell's banner says so). Returns {close(), lastEventId()}.
 */
(function () {
  "use strict";
  var W = (window.Wangge = window.Wangge || {});
  var FAILED_TEXT = "实时更新已中断，正在重试…";
  var LOGIN_TEXT = "登录已过期，实时更新已停止，请重新登录";

  W.live = function (url, onEvent, options) {
    var onStatus = (options && options.onStatus) || function () {};
    var source = null;
    var closed = false;
    var lastId = null;
    var timer = null;
    var failures = 0;

    function target() {
      if (!lastId) return url;
      var u = new URL(url, window.location.href);
      u.searchParams.set("after", lastId);
      return u.pathname + u.search;
    }

    function gaveUp() {
      failures += 1;
      onStatus("failed");
      // Ask who we are: a lost login is said plainly and not retried; anything else is retried.
      var check = W.api ? W.api("/auth/me") : Promise.resolve(null);
      check.then(function () {
        if (failures >= 3 && W.showError) W.showError(FAILED_TEXT);
        timer = window.setTimeout(open, Math.min(30000, 2000 * failures));
      }, function (err) {
        if (err && err.status === 401) {
          onStatus("closed");
          // The shell's own sentence for a lost login, with its link to log in again.
          if (W.showError) W.showError(err instanceof W.ApiError ? err : LOGIN_TEXT);
          return;
        }
        timer = window.setTimeout(open, Math.min(30000, 2000 * failures));
      });
    }

    function open() {
      if (closed) return;
      source = new EventSource(target());
      source.onopen = function () {
        if (failures >= 3 && W.clearError) W.clearError();
        failures = 0;
        onStatus("open");
      };
      source.addEventListener("ready", function (e) {
        if (e.lastEventId) lastId = e.lastEventId;   // where this stream started: resume from here
      });
      source.addEventListener("incident", function (e) {
        if (e.lastEventId) lastId = e.lastEventId;
        var data;
        try {
          data = JSON.parse(e.data);
        } catch (err) {
          return;
        }
        onEvent(data, e.lastEventId);
      });
      source.onerror = function () {
        if (closed) return;
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          gaveUp();
        } else {
          onStatus("reconnecting");   // EventSource retries itself, with Last-Event-ID
        }
      };
    }

    open();
    return {
      close: function () {
        closed = true;
        window.clearTimeout(timer);
        if (source) source.close();
        onStatus("closed");
      },
      lastEventId: function () {
        return lastId;
      },
    };
  };
})();
