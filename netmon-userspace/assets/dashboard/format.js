// netmon dashboard formatting shared by the pages' scripts (dashboard.js,
// fleet.js), loaded before them: byte counts and rates in binary units.
"use strict";
window.netmonFormat = (function () {
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  function bytes(n) {
    if (n == null || !isFinite(n)) return "–";
    let v = Math.abs(n), u = 0;
    while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++; }
    const s = u === 0 ? String(Math.round(v)) : v.toFixed(v < 10 ? 2 : 1);
    return (n < 0 ? "-" : "") + s + " " + UNITS[u];
  }
  const rate = (n) => bytes(n) + "/s";
  return Object.freeze({ bytes, rate });
})();
