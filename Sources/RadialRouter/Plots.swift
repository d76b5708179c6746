import Foundation

/// Small self-contained SVG charts: something a person would rather look at than a table.
public enum SVGPlot {
    /// Per-layer contribution: a p10–p90 bar and a median dot for each layer.
    public static func profile(_ s: [ResidualProfile.LayerSummary], title: String) -> String {
        let w = 760.0, h = 360.0, left = 56.0, right = 16.0, top = 36.0, bottom = 44.0
        let plotW = w - left - right, plotH = h - top - bottom
        let top99 = Double(s.map(\.p90).max() ?? 1)
        let yMax = max(0.1, (top99 * 10).rounded(.up) / 10)
        func x(_ i: Int) -> Double { left + (Double(i) + 0.5) * plotW / Double(max(s.count, 1)) }
        func y(_ v: Float) -> Double { top + plotH * (1 - min(Double(v), yMax) / yMax) }
        var out = header(w, h, title)
        out += axes(left: left, top: top, plotW: plotW, plotH: plotH, yMax: yMax, yLabel: "r = ‖f(x)‖ / ‖x + f(x)‖")
        for (i, l) in s.enumerated() {
            out += "<line x1=\"\(f(x(i)))\" y1=\"\(f(y(l.p10)))\" x2=\"\(f(x(i)))\" y2=\"\(f(y(l.p90)))\" stroke=\"#8fb3d9\" stroke-width=\"8\"/>\n"
            out += "<circle cx=\"\(f(x(i)))\" cy=\"\(f(y(l.median)))\" r=\"3.5\" fill=\"#1f4e79\"/>\n"
            if i % 2 == 0 || s.count <= 16 {
                out += "<text x=\"\(f(x(i)))\" y=\"\(f(top + plotH + 16))\" font-size=\"11\" text-anchor=\"middle\">\(l.layer)</text>\n"
            }
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(h - 8))\" font-size=\"12\" text-anchor=\"middle\">layer (bar: p10–p90, dot: median)</text>\n"
        return out + "</svg>\n"
    }

    /// Held-out perplexity against the fraction of layers skipped, one line per family of operating points.
    public static func curves(_ series: [(name: String, color: String, points: [(skip: Double, perplexity: Double)])], title: String) -> String {
        let w = 760.0, h = 400.0, left = 64.0, right = 150.0, top = 36.0, bottom = 44.0
        let plotW = w - left - right, plotH = h - top - bottom
        let all = series.flatMap(\.points)
        let xMax = max(0.05, ((all.map(\.skip).max() ?? 0.1) * 20).rounded(.up) / 20)
        let yMin = (all.map(\.perplexity).min() ?? 1) * 0.95, yMaxP = (all.map(\.perplexity).max() ?? 2) * 1.05
        func x(_ v: Double) -> Double { left + plotW * v / xMax }
        func y(_ v: Double) -> Double { top + plotH * (1 - (v - yMin) / max(yMaxP - yMin, 1e-9)) }
        var out = header(w, h, title)
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#444\"/>\n"
        for i in 0...4 {
            let v = yMin + (yMaxP - yMin) * Double(i) / 4, xv = xMax * Double(i) / 4
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" font-size=\"11\" text-anchor=\"end\">\(String(format: "%.0f", v))</text>\n"
            out += "<text x=\"\(f(x(xv)))\" y=\"\(f(top + plotH + 16))\" font-size=\"11\" text-anchor=\"middle\">\(String(format: "%.0f%%", xv * 100))</text>\n"
        }
        for (k, s) in series.enumerated() {
            let pts = s.points.sorted { $0.skip < $1.skip }
            let path = pts.map { "\(f(x($0.skip))),\(f(y($0.perplexity)))" }.joined(separator: " ")
            out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"/>\n"
            for p in pts { out += "<circle cx=\"\(f(x(p.skip)))\" cy=\"\(f(y(p.perplexity)))\" r=\"3\" fill=\"\(s.color)\"/>\n" }
            let ly = top + 14 + Double(k) * 18
            out += "<line x1=\"\(f(left + plotW + 12))\" y1=\"\(f(ly - 4))\" x2=\"\(f(left + plotW + 30))\" y2=\"\(f(ly - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"/>\n"
            out += "<text x=\"\(f(left + plotW + 34))\" y=\"\(f(ly))\" font-size=\"12\">\(s.name)</text>\n"
        }
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(h - 8))\" font-size=\"12\" text-anchor=\"middle\">layers skipped</text>\n"
        out += "<text x=\"14\" y=\"\(f(top + plotH / 2))\" font-size=\"12\" transform=\"rotate(-90 14 \(f(top + plotH / 2)))\" text-anchor=\"middle\">held-out perplexity</text>\n"
        return out + "</svg>\n"
    }

    private static func header(_ w: Double, _ h: Double, _ title: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + "<text x=\"\(Int(w / 2))\" y=\"20\" font-size=\"14\" text-anchor=\"middle\">\(escape(title))</text>\n"
    }

    private static func axes(left: Double, top: Double, plotW: Double, plotH: Double, yMax: Double, yLabel: String) -> String {
        var out = "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#444\"/>\n"
        for i in 0...4 {
            let v = yMax * Double(i) / 4, yy = top + plotH * (1 - Double(i) / 4)
            out += "<line x1=\"\(f(left))\" y1=\"\(f(yy))\" x2=\"\(f(left + plotW))\" y2=\"\(f(yy))\" stroke=\"#ddd\"/>\n"
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(yy + 4))\" font-size=\"11\" text-anchor=\"end\">\(String(format: "%.2f", v))</text>\n"
        }
        out += "<text x=\"14\" y=\"\(f(top + plotH / 2))\" font-size=\"12\" transform=\"rotate(-90 14 \(f(top + plotH / 2)))\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        return out
    }

    private static func f(_ v: Double) -> String { String(format: "%.1f", v) }
    private static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
