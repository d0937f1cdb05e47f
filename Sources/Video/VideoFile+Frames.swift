import CFFmpeg

extension VideoFile {
    /// The frames with these display indices, upright RGB, in the order asked.
    ///
    /// Indices may repeat and come in any order; they are visited in increasing order so the
    /// decoder only moves forward. To reach an index it seeks (av_seek_frame, backward: the
    /// keyframe at or before the target time) only when a keyframe lies between the current
    /// position and the target, and otherwise decodes on; it then decodes forward to the frame
    /// whose best-effort timestamp is within half a frame of the target (or, for variable frame
    /// rate, the last frame starting before that). Past the last decodable frame (a truncated
    /// file, or a header that over-counts) the last decodable frame is delivered with
    /// `clamped` set, and `decodableFrameCount` records where the file really ends.
    ///
    /// Throws `VideoError` for a negative index, or `.frameNotDecodable` when no frame at or
    /// before the index decodes even from the start of the file.
    public func frames(at indices: [Int]) throws -> [RGBFrame] {
        if let bad = indices.first(where: { $0 < 0 }) {
            throw VideoError(path: path, kind: .invalidRequest, detail: "frame index \(bad) is negative")
        }
        let order = indices.indices.sorted { (indices[$0], $0) < (indices[$1], $1) }
        var result = [RGBFrame?](repeating: nil, count: indices.count)
        var last: (ticks: Int64, width: Int, height: Int, rgb: [UInt8])? = nil
        for position in order {
            let index = indices[position]
            let (box, clamped) = try locate(index)
            if last?.ticks != box.ticks {
                guard let image = converter.convert(box.frame, rotation: rotation) else {
                    throw VideoError(path: path, kind: .frameNotDecodable(index),
                                     detail: "cannot convert pixel format \(pixelFormatName(box.frame)) to RGB")
                }
                last = (box.ticks, image.width, image.height, image.rgb)
            }
            let image = last!
            result[position] = RGBFrame(width: image.width, height: image.height, rgb: image.rgb,
                                        index: index, timestamp: clock.seconds(ofTicks: box.ticks),
                                        sourceIndex: clock.index(ofTicks: box.ticks), clamped: clamped)
        }
        return result.map { $0! }
    }

    /// The decoded frame shown at display index `index`, and whether the file ended before it.
    func locate(_ index: Int) throws -> (DecodedFrame, clamped: Bool) {
        let target = clock.ticks(ofIndex: index)
        let half = clock.ticksPerFrame / 2
        position(toward: target)
        var retreats = 0 // re-seeks to earlier points after landing past the target
        var rewound = false
        while true {
            guard let current = held else {
                if decodeNext() { continue }
                // Nothing decodes from where the seek landed (a keyframe in a missing tail, say):
                // start earlier.
                try retreat(from: target, attempt: &retreats, rewound: &rewound, index: index)
                continue
            }
            let time = Double(current.ticks)
            if abs(time - target) <= half { return (current, false) }
            if time > target + half {
                if let earlier = previous, Double(earlier.ticks) <= target + half { return (earlier, false) }
                let isFirstFrame = time <= Double(clock.startTicks) + half
                if previous == nil && !isFirstFrame && !rewound {
                    // The seek landed after the target: go further back.
                    try retreat(from: target, attempt: &retreats, rewound: &rewound, index: index)
                    continue
                }
                return (current, false)
            }
            if !decodeNext() {
                noteEnd(lastTicks: current.ticks)
                return (current, true)
            }
        }
    }

    /// Seeks when that beats decoding forward: the target is behind what we hold, or an indexed
    /// keyframe lies between the held frame and the target (without an index: more than five
    /// seconds ahead).
    private func position(toward target: Double) {
        let half = clock.ticksPerFrame / 2
        guard let current = held else {
            seek(toward: target)
            return
        }
        let time = Double(current.ticks)
        if target + half < time {
            if let earlier = previous, Double(earlier.ticks) <= target + half { return }
            seek(toward: target)
            return
        }
        if target - half <= time || input.atEnd { return }
        if !hasTimestamps { return }
        if let keyframe = input.keyframe(atOrBefore: StreamClock.int64(target)) {
            if Double(keyframe) > time { seek(toward: target) }
        } else if target - time > 5 * clock.ticksPerSecond {
            seek(toward: target)
        }
    }

    private func seek(toward target: Double) {
        let ticks = StreamClock.int64(max(target, Double(clock.startTicks)))
        if hasTimestamps && input.seek(toTicks: ticks) {
            seeks += 1
            positionKnown = false
            dropFrames()
        } else if held.map({ Double($0.ticks) > target }) ?? true {
            // Cannot seek: go back to the start and decode forward.
            if (try? rewind()) == nil { dropFrames() }
        }
    }

    /// Seeks 1, 2, 4, ... seconds before the target; after eight tries, or once the start is
    /// passed, decodes from the very beginning; after that, gives up on this frame.
    private func retreat(from target: Double, attempt: inout Int, rewound: inout Bool, index: Int) throws {
        if rewound {
            throw VideoError(path: path, kind: .frameNotDecodable(index),
                             detail: "no frame at or before it decodes")
        }
        let back = target - clock.ticksPerSecond * Double(1 << attempt)
        attempt += 1
        if hasTimestamps && attempt <= 8 && back > Double(clock.startTicks)
            && input.seek(toTicks: StreamClock.int64(back)) {
            seeks += 1
            positionKnown = false
            dropFrames()
            return
        }
        do {
            try rewind()
        } catch {
            throw VideoError(path: path, kind: .frameNotDecodable(index), detail: "reopening failed: \(error)")
        }
        rewound = true
    }

    private func pixelFormatName(_ frame: UnsafeMutablePointer<AVFrame>) -> String {
        guard let name = av_get_pix_fmt_name(AVPixelFormat(rawValue: frame.pointee.format)) else {
            return "\(frame.pointee.format)"
        }
        return String(cString: name)
    }
}
