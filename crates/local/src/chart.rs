//! The story as a picture: one lane per instance (its life, its jobs, its notice and drain), the regions the
//! fleet used, and the markers for what AWS did to it. Pure: data in, SVG/HTML text out.

use std::fmt::Write as _;

use serde::Serialize;

/// Everything the chart shows. Times are seconds since the run started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Chart {
    pub title: String,
    /// The end of the time axis.
    pub duration_s: f64,
    pub lanes: Vec<Lane>,
    pub markers: Vec<Marker>,
    /// Jobs waiting or in flight on the job queue, sampled over time: `(at_s, queued, in_flight)`.
    pub backlog: Vec<(f64, u32, u32)>,
}

/// One EC2 instance of the fleet and the worker that ran on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lane {
    pub instance_id: String,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    /// `spot` or `on-demand`.
    pub lifecycle: String,
    pub launched_s: f64,
    /// When it was gone (terminated); `None` while it still ran at the end.
    pub ended_s: Option<f64>,
    /// When the control plane started draining it.
    pub draining_s: Option<f64>,
    /// When its spot interruption notice arrived.
    pub notice_s: Option<f64>,
    pub jobs: Vec<JobBar>,
}

/// One run of one job on one worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobBar {
    pub job_id: String,
    pub start_s: f64,
    pub end_s: f64,
    pub outcome: RunOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    /// Handed back to the queue (a notice, a drain) for another worker to run.
    Released,
    /// The worker died under it; SQS redelivers it after its visibility timeout.
    Lost,
    /// Still running when the chart was drawn.
    Running,
}

/// A moment on the time axis, drawn across every lane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub at_s: f64,
    pub kind: MarkerKind,
    /// A short label drawn beside the marker (e.g. `us-east-1 → us-west-2`).
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// Jobs were submitted.
    Submitted,
    /// Capacity was taken away (injected at the API).
    ShortageStarts,
    /// Capacity came back.
    ShortageEnds,
    /// A launch call came back with capacity errors.
    LaunchFailed,
    /// The fleet moved to another region.
    Migration,
    /// A spot interruption notice.
    Interruption,
    /// Every job was final.
    AllDone,
}

/// Writing to a `String` cannot fail, so the `fmt::Result` is dropped here once rather than at every call.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{ let _ = write!($out, $($arg)*); }};
}

const WIDTH: f64 = 1200.0;
/// Room at the left for the lane labels.
const LEFT: f64 = 240.0;
const RIGHT: f64 = 30.0;
const LANE_H: f64 = 36.0;
const BACKLOG_H: f64 = 70.0;
/// Marker labels are staggered over this many rows so that close markers stay readable.
const LABEL_ROWS: usize = 4;
const LABEL_ROW_H: f64 = 13.0;
const REGION_COLOURS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"];
const OUTCOMES: [RunOutcome; 5] =
    [RunOutcome::Succeeded, RunOutcome::Failed, RunOutcome::Released, RunOutcome::Lost, RunOutcome::Running];
const KINDS: [MarkerKind; 7] = [
    MarkerKind::Submitted,
    MarkerKind::ShortageStarts,
    MarkerKind::ShortageEnds,
    MarkerKind::LaunchFailed,
    MarkerKind::Migration,
    MarkerKind::Interruption,
    MarkerKind::AllDone,
];

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The name matches the serde form, so the chart and the JSON speak the same words.
fn outcome_style(o: RunOutcome) -> (&'static str, &'static str) {
    match o {
        RunOutcome::Succeeded => ("succeeded", "#2e9e4f"),
        RunOutcome::Failed => ("failed", "#d64541"),
        RunOutcome::Released => ("released", "#f0a202"),
        RunOutcome::Lost => ("lost", "#7b1e1e"),
        RunOutcome::Running => ("running", "#6b8cae"),
    }
}

fn kind_style(k: MarkerKind) -> (&'static str, &'static str) {
    match k {
        MarkerKind::Submitted => ("submitted", "#4a6fa5"),
        MarkerKind::ShortageStarts => ("shortage starts", "#c0392b"),
        MarkerKind::ShortageEnds => ("shortage ends", "#27ae60"),
        MarkerKind::LaunchFailed => ("launch failed", "#e67e22"),
        MarkerKind::Migration => ("migration", "#8e44ad"),
        MarkerKind::Interruption => ("interruption", "#e84393"),
        MarkerKind::AllDone => ("all done", "#2c3e50"),
    }
}

/// Rough width of 11px sans-serif text; only used to keep labels apart, so it need not be exact.
fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * 6.2
}

/// Maps seconds to x; a zero, negative or non-finite duration collapses everything to the axis start.
struct Scale {
    dur: f64,
}

impl Scale {
    fn t(&self, t: f64) -> f64 {
        if t.is_nan() { 0.0 } else { t.clamp(0.0, self.dur) }
    }
    fn x(&self, t: f64) -> f64 {
        let span = if self.dur > 0.0 { self.dur } else { 1.0 };
        LEFT + self.t(t) / span * (WIDTH - LEFT - RIGHT)
    }
}

/// At most about a dozen ticks, on steps a reader counts in.
fn tick_step(dur: f64) -> f64 {
    const STEPS: [f64; 13] = [1., 2., 5., 10., 20., 30., 60., 120., 300., 600., 900., 1800., 3600.];
    STEPS.into_iter().find(|s| dur / s <= 12.0).unwrap_or_else(|| (dur / 12.0 / 3600.0).ceil() * 3600.0)
}

/// A swatch and its text; returns the x where the next item goes.
fn legend_item(out: &mut String, x: f64, y: f64, fill: &str, extra: &str, label: &str) -> f64 {
    let (top, tx, text) = (y - 10.0, x + 16.0, escape(label));
    put!(out, "<rect x='{x:.1}' y='{top:.1}' width='12' height='12' fill='{fill}'{extra}/>");
    put!(out, "<text x='{tx:.1}' y='{y:.1}'>{text}</text>");
    x + 28.0 + text_w(label)
}

/// A filled step area: each sample's value holds until the next sample, the last one until `x_end`.
fn step_area(points: &[(f64, f64)], base: f64, x_end: f64) -> String {
    let mut d = String::new();
    if let Some(&(x0, _)) = points.first() {
        put!(d, "M{x0:.1} {base:.1}");
        for &(x, y) in points {
            put!(d, " H{x:.1} V{y:.1}");
        }
        put!(d, " H{x_end:.1} V{base:.1} Z");
    }
    d
}

const LOST_OUTLINE: &str = " stroke='#000' stroke-dasharray='2 1'";

fn draw_lane(o: &mut String, sc: &Scale, lane: &Lane, y: f64, colour: &str) {
    let (lx0, lx1) = (sc.x(lane.launched_s), sc.x(lane.ended_s.unwrap_or(sc.dur)));
    let (id, (y1, y2, y3)) = (escape(&lane.instance_id), (y + 15.0, y + 29.0, y + 16.0));
    let sub = escape(&format!("{} · {} · {} · {}", lane.region, lane.zone, lane.instance_type, lane.lifecycle));
    put!(o, "<g><rect x='0' y='{y:.1}' width='{WIDTH}' height='{LANE_H}' fill='{colour}' fill-opacity='0.06'/>");
    put!(o, "<rect x='0' y='{y:.1}' width='4' height='{LANE_H}' fill='{colour}'/>");
    put!(o, "<text x='10' y='{y1:.1}' font-size='12'>{id}</text>");
    put!(o, "<text x='10' y='{y2:.1}' font-size='10' fill='#555'>{sub}</text>");
    put!(
        o,
        "<rect x='{lx0:.1}' y='{y3:.1}' width='{:.1}' height='4' fill='{colour}' fill-opacity='0.6'/>",
        (lx1 - lx0).max(0.0)
    );
    for job in &lane.jobs {
        let (name, fill) = outcome_style(job.outcome);
        let (jx0, w, by) = (sc.x(job.start_s), (sc.x(job.end_s) - sc.x(job.start_s)).max(1.0), y + 10.0);
        let extra = if job.outcome == RunOutcome::Lost { LOST_OUTLINE } else { "" };
        let (id, t0, t1) = (escape(&job.job_id), sc.t(job.start_s), sc.t(job.end_s));
        put!(o, "<rect x='{jx0:.1}' y='{by:.1}' width='{w:.1}' height='16' fill='{fill}'{extra}>");
        put!(o, "<title>{id} {name} {t0:.1}–{t1:.1} s</title></rect>");
    }
    if let Some(d) = lane.draining_s {
        let (dx, dy, t) = (sc.x(d), y + 7.0, sc.t(d));
        put!(o, "<rect x='{dx:.1}' y='{dy:.1}' width='{:.1}' height='22' fill='url(#gf-drain)' ", (lx1 - dx).max(0.0));
        put!(o, "stroke='#777' stroke-width='0.5'><title>draining from {t:.1} s</title></rect>");
    }
    if let Some(n) = lane.notice_s {
        let (nx, t, top, tip) = (sc.x(n), sc.t(n), y + 1.0, y + 10.0);
        put!(o, "<polygon points='{:.1},{top:.1} {:.1},{top:.1} {nx:.1},{tip:.1}' fill='#d00'>", nx - 5.0, nx + 5.0);
        put!(o, "<title>spot notice at {t:.1} s</title></polygon>");
    }
    o.push_str("</g>");
}

fn draw_backlog(o: &mut String, sc: &Scale, backlog: &[(f64, u32, u32)], top: f64) {
    let (y1, y2, base, x_start, x_end) = (top + 14.0, top + 28.0, top + BACKLOG_H, sc.x(0.0), sc.x(sc.dur));
    put!(o, "<g class='backlog'><text x='10' y='{y1:.1}' font-size='12'>backlog</text>");
    put!(o, "<text x='10' y='{y2:.1}' font-size='10' fill='#555'>queued + in flight (dark: in flight)</text>");
    let mut samples = backlog.to_vec();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let max = samples.iter().map(|&(_, q, f)| q.saturating_add(f)).max().unwrap_or(0);
    let vy = |v: u32| base - f64::from(v) / f64::from(max.max(1)) * (BACKLOG_H - 10.0);
    let total: Vec<_> = samples.iter().map(|&(t, q, f)| (sc.x(t), vy(q.saturating_add(f)))).collect();
    let flight: Vec<_> = samples.iter().map(|&(t, _, f)| (sc.x(t), vy(f))).collect();
    let (total, flight, my, lx) =
        (step_area(&total, base, x_end), step_area(&flight, base, x_end), vy(max), x_start - 4.0);
    put!(o, "<path d='{total}' fill='#6b8cae' fill-opacity='0.35' stroke='#6b8cae'/>");
    put!(o, "<path d='{flight}' fill='#34495e' fill-opacity='0.5'/>");
    put!(o, "<line x1='{x_start:.1}' y1='{my:.1}' x2='{x_end:.1}' y2='{my:.1}' stroke='#999' stroke-dasharray='2 3'/>");
    put!(o, "<text x='{lx:.1}' y='{:.1}' text-anchor='end' fill='#333'>max {max}</text></g>", my + 4.0);
}

/// `label_top` is where the staggered label rows start, `lf_top` the strip for launch-failure ticks.
fn draw_markers(o: &mut String, sc: &Scale, markers: &[Marker], label_top: f64, lf_top: f64, axis_y: f64) {
    let mut markers: Vec<&Marker> = markers.iter().collect();
    markers.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let (failed, lf_bottom) = (markers.iter().filter(|m| m.kind == MarkerKind::LaunchFailed).count(), lf_top + 10.0);
    o.push_str("<g class='markers'>");
    if failed > 0 {
        put!(o, "<text x='10' y='{lf_bottom:.1}' fill='#e67e22'>launch failed ({failed})</text>");
    }
    let mut row_end = [f64::NEG_INFINITY; LABEL_ROWS];
    for m in markers {
        let (name, colour) = kind_style(m.kind);
        let (mx, label) = (sc.x(m.at_s), escape(&m.label));
        let tip = escape(&format!("{name} at {:.1} s: {}", sc.t(m.at_s), m.label));
        // Launch failures can come by the dozen, so they get short ticks in their own strip, not full lines.
        if m.kind == MarkerKind::LaunchFailed {
            put!(o, "<line x1='{mx:.1}' y1='{lf_top:.1}' x2='{mx:.1}' y2='{lf_bottom:.1}' stroke='{colour}' ");
            put!(o, "stroke-width='2'><title>{tip}</title></line>");
            continue;
        }
        let w = text_w(&m.label) + 6.0;
        // Past the right edge the label hangs to the left of its line instead.
        let (lx, anchor, span) = if mx + w > WIDTH {
            (mx - 3.0, "end", (mx - 3.0 - w, mx))
        } else {
            (mx + 3.0, "start", (mx, mx + 3.0 + w))
        };
        // The first row with room; when none has, the one that frees up first, so overlap stays small.
        let row = (0..LABEL_ROWS)
            .find(|&r| row_end[r] < span.0)
            .unwrap_or_else(|| (0..LABEL_ROWS).min_by(|&a, &b| row_end[a].total_cmp(&row_end[b])).unwrap_or(0));
        row_end[row] = row_end[row].max(span.1);
        let (ly, line_top) = (label_top + (row as f64 + 1.0) * LABEL_ROW_H - 3.0, label_top + row as f64 * LABEL_ROW_H);
        put!(o, "<g><title>{tip}</title><line x1='{mx:.1}' y1='{line_top:.1}' x2='{mx:.1}' y2='{axis_y:.1}' ");
        put!(o, "stroke='{colour}' stroke-dasharray='4 3'/>");
        put!(o, "<text x='{lx:.1}' y='{ly:.1}' text-anchor='{anchor}' fill='{colour}'>{label}</text></g>");
    }
    o.push_str("</g>");
}

pub fn svg(chart: &Chart) -> String {
    let dur = if chart.duration_s.is_finite() && chart.duration_s > 0.0 { chart.duration_s } else { 0.0 };
    let sc = Scale { dur };
    let mut regions: Vec<&str> = Vec::new();
    for lane in &chart.lanes {
        if !regions.contains(&lane.region.as_str()) {
            regions.push(&lane.region);
        }
    }
    let region_index = |r: &str| regions.iter().position(|x| *x == r).unwrap_or(0);
    // Lanes of one region sit together; within a region they keep the caller's order.
    let mut lanes: Vec<&Lane> = chart.lanes.iter().collect();
    lanes.sort_by_key(|l| region_index(&l.region));

    let label_top = 100.0;
    let lf_top = label_top + LABEL_ROWS as f64 * LABEL_ROW_H + 4.0;
    let lanes_top = lf_top + 16.0;
    let backlog_top = lanes_top + lanes.len() as f64 * LANE_H + 12.0;
    let axis_y = backlog_top + BACKLOG_H + 8.0;
    let height = axis_y + 40.0;
    let (x_start, x_end, title) = (sc.x(0.0), sc.x(dur), escape(&chart.title));

    let mut o = String::new();
    put!(o, "<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0}' ");
    put!(o, "viewBox='0 0 {WIDTH} {height:.0}' font-family='sans-serif' font-size='11'><title>{title}</title>");
    o.push_str(
        "<defs><pattern id='gf-drain' width='6' height='6' patternUnits='userSpaceOnUse' \
         patternTransform='rotate(45)'><rect width='6' height='6' fill='#000' fill-opacity='0.04'/>\
         <line x1='0' y1='0' x2='0' y2='6' stroke='#555' stroke-width='2' stroke-opacity='0.45'/></pattern></defs>\
         <rect width='100%' height='100%' fill='#fff'/>",
    );
    put!(o, "<text x='10' y='28' font-size='18' font-weight='bold'>{title}</text><g class='legend'>");
    let mut x = 10.0;
    for oc in OUTCOMES {
        let (name, fill) = outcome_style(oc);
        x = legend_item(&mut o, x, 54.0, fill, if oc == RunOutcome::Lost { LOST_OUTLINE } else { "" }, name);
    }
    x = legend_item(&mut o, x, 54.0, "url(#gf-drain)", " stroke='#999'", "draining");
    let (x1, x2, x3) = (x + 12.0, x + 6.0, x + 16.0);
    put!(
        o,
        "<polygon points='{x:.1},44 {x1:.1},44 {x2:.1},54' fill='#d00'/><text x='{x3:.1}' y='54'>spot notice</text>"
    );
    let mut x = 10.0;
    for k in KINDS {
        let (name, colour) = kind_style(k);
        x = legend_item(&mut o, x, 72.0, colour, "", name);
    }
    let mut x = 10.0;
    for (i, r) in regions.iter().enumerate() {
        x = legend_item(&mut o, x, 90.0, REGION_COLOURS[i % REGION_COLOURS.len()], " fill-opacity='0.6'", r);
    }

    o.push_str("</g><g class='axis' stroke='#ddd'>");
    let (step, grid_bottom, label_y, caption_y) = (tick_step(dur), axis_y + 4.0, axis_y + 16.0, axis_y + 32.0);
    for i in 0..=(dur / step).floor() as u64 {
        let t = i as f64 * step;
        let tx = sc.x(t);
        put!(o, "<line x1='{tx:.1}' y1='{lanes_top:.1}' x2='{tx:.1}' y2='{grid_bottom:.1}'/>");
        put!(o, "<text x='{tx:.1}' y='{label_y:.1}' text-anchor='middle' stroke='none' fill='#333'>{t:.0}s</text>");
    }
    put!(o, "<line x1='{x_start:.1}' y1='{axis_y:.1}' x2='{x_end:.1}' y2='{axis_y:.1}' stroke='#333'/>");
    put!(o, "<text x='{x_end:.1}' y='{caption_y:.1}' stroke='none' fill='#333' text-anchor='end'>time (s)</text>");
    o.push_str("</g><g class='lanes'>");
    for (i, l) in lanes.iter().enumerate() {
        let colour = REGION_COLOURS[region_index(&l.region) % REGION_COLOURS.len()];
        draw_lane(&mut o, &sc, l, lanes_top + i as f64 * LANE_H, colour);
    }
    o.push_str("</g>");
    draw_backlog(&mut o, &sc, &chart.backlog, backlog_top);
    draw_markers(&mut o, &sc, &chart.markers, label_top, lf_top, axis_y);
    o.push_str("</svg>\n");
    o
}

pub fn html(chart: &Chart, timeline: &[String]) -> String {
    let title = escape(&chart.title);
    let mut o = String::new();
    put!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}\n\
         pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }}\n\
         table {{ border-collapse: collapse; font-size: 13px; }}\n\
         th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}\n\
         td.n {{ text-align: right; }}\n\
         </style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    o.push_str(&svg(chart));
    o.push_str("<h2>Timeline</h2>\n<pre>");
    for line in timeline {
        put!(o, "{}\n", escape(line));
    }
    o.push_str("</pre>\n<h2>Instances</h2>\n<table>\n<tr><th>instance</th><th>region</th><th>zone</th><th>type</th>");
    o.push_str("<th>lifecycle</th><th>launched</th><th>ended</th><th>jobs run</th></tr>\n");
    for l in &chart.lanes {
        o.push_str("<tr>");
        for cell in [&l.instance_id, &l.region, &l.zone, &l.instance_type, &l.lifecycle] {
            put!(o, "<td>{}</td>", escape(cell));
        }
        let ended = l.ended_s.map_or_else(|| "—".to_string(), |e| format!("{e:.1} s"));
        put!(o, "<td class=\"n\">{:.1} s</td><td class=\"n\">{ended}</td>", l.launched_s);
        put!(o, "<td class=\"n\">{}</td></tr>\n", l.jobs.len());
    }
    o.push_str("</table>\n</body>\n</html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, start_s: f64, end_s: f64, outcome: RunOutcome) -> JobBar {
        JobBar { job_id: id.into(), start_s, end_s, outcome }
    }

    fn sample() -> Chart {
        let lane = |id: &str, region: &str, jobs| Lane {
            instance_id: id.into(),
            region: region.into(),
            zone: format!("{region}a"),
            instance_type: "g5.xlarge".into(),
            lifecycle: "spot".into(),
            launched_s: 5.0,
            ended_s: None,
            draining_s: None,
            notice_s: None,
            jobs,
        };
        let mut east = lane(
            "i-east",
            "us-east-1",
            vec![
                job("job-ok", 10.0, 30.0, RunOutcome::Succeeded),
                job("job-bad", 31.0, 40.0, RunOutcome::Failed),
                job("job-back", 41.0, 60.0, RunOutcome::Released),
            ],
        );
        (east.notice_s, east.draining_s, east.ended_s) = (Some(55.0), Some(56.0), Some(62.0));
        let west = lane(
            "i-west",
            "us-west-2",
            vec![job("job-gone", 70.0, 80.0, RunOutcome::Lost), job("job-now", 81.0, 500.0, RunOutcome::Running)],
        );
        let marker = |at_s, kind, label: &str| Marker { at_s, kind, label: label.into() };
        Chart {
            title: "run <1>".into(),
            duration_s: 120.0,
            lanes: vec![east, west],
            markers: vec![
                marker(0.0, MarkerKind::Submitted, "8 jobs"),
                marker(50.0, MarkerKind::ShortageStarts, "a<b & c>"),
                marker(52.0, MarkerKind::LaunchFailed, "InsufficientInstanceCapacity"),
                marker(55.0, MarkerKind::Interruption, "i-east"),
                marker(64.0, MarkerKind::Migration, "us-east-1 → us-west-2"),
                marker(110.0, MarkerKind::AllDone, "all done"),
            ],
            backlog: vec![(0.0, 8, 0), (10.0, 7, 1), (70.0, 1, 1), (110.0, 0, 0)],
        }
    }

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn svg_draws_every_job_marker_and_escapes_text() {
        let chart = sample();
        let out = svg(&chart);
        let trimmed = out.trim();
        assert!(trimmed.starts_with("<svg"), "{trimmed:.80}");
        assert!(trimmed.ends_with("</svg>"));
        for lane in &chart.lanes {
            for j in &lane.jobs {
                assert_eq!(count(&out, &format!("<title>{} ", j.job_id)), 1, "{}", j.job_id);
            }
        }
        assert!(out.contains("<title>job-back released 41.0–60.0 s</title>"));
        // A bar past the end of the axis is cut at the end.
        assert!(out.contains("<title>job-now running 81.0–120.0 s</title>"));
        assert!(out.contains("a&lt;b &amp; c&gt;"));
        assert!(!out.contains("a<b"));
        assert!(out.contains("run &lt;1&gt;"));
        assert_eq!(count(&out, "<svg"), count(&out, "</svg>"));
        assert_eq!(count(&out, "<g>") + count(&out, "<g "), count(&out, "</g>"));
        assert!(out.contains("us-east-1 · us-east-1a · g5.xlarge · spot"));
        assert!(out.contains("spot notice at 55.0 s") && out.contains("draining from 56.0 s"));
        assert!(out.contains("launch failed (1)") && out.contains("max 8"));
        for k in ["shortage starts", "migration", "interruption", "all done", "submitted"] {
            assert!(out.contains(&format!("<title>{k} at ")), "{k}");
        }
    }

    #[test]
    fn empty_and_degenerate_charts_render() {
        let out = svg(&Chart::default());
        assert!(out.trim().starts_with("<svg") && out.trim().ends_with("</svg>"));
        assert!(!out.contains("NaN") && !out.contains("inf"));
        let mut odd = sample();
        odd.duration_s = f64::NAN;
        odd.lanes[0].jobs[0].start_s = -5.0;
        odd.markers[0].at_s = f64::INFINITY;
        let out = svg(&odd);
        assert!(!out.contains("NaN") && !out.contains("inf"));
    }

    #[test]
    fn html_holds_svg_timeline_and_lane_table() {
        let chart = sample();
        let lines = vec!["  0.0s submitted <8> jobs".to_string(), " 64.0s moved & kept going".to_string()];
        let page = html(&chart, &lines);
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        assert!(page.contains(&svg(&chart)));
        assert!(page.contains("0.0s submitted &lt;8&gt; jobs\n"));
        assert!(page.contains("moved &amp; kept going"));
        assert!(page.contains("<td>i-west</td><td>us-west-2</td><td>us-west-2a</td>"));
        assert!(page.contains("<td class=\"n\">62.0 s</td><td class=\"n\">3</td>"));
    }
}
