import Foundation
import Testing

/// `m2clip train` and `m2clip eval` as a user runs them: lists refused before anything is
/// written, a run on real (generated) videos with a damaged one among them, SIGTERM and
/// --resume, and the trained model in eval and classify.
@Suite(.serialized) struct TrainCLITests {
    let cli = CLITests()

    final class Scratch {
        let path: String
        init() throws {
            path = NSTemporaryDirectory() + "m2clip-train-cli-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        func callAsFunction(_ name: String) -> String { path + "/" + name }
    }

    /// 8 frames, 8 fps, 48×36: a square moving right, or the reverse (left).
    static func clip(_ path: String, y: Int, x: Int, reverse: Bool) throws {
        var filter = "[0][1]overlay=x='\(x)+t*24':y=\(y):shortest=1"
        if reverse { filter += ",reverse" }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=0x202020:s=48x36:r=8:d=1",
                       "-f", "lavfi", "-i", "color=c=0xE0C040:s=10x10:r=8:d=1", "-filter_complex", filter,
                       "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", path]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "ffmpeg made \(path)")
    }

    /// A tiny untrained model over the two labels, and a class-folder tree of clips.
    static func setUp(_ s: Scratch, pairs: Int) throws {
        try "moving left\nmoving right\n".write(toFile: s("labels.txt"), atomically: true, encoding: .utf8)
        let cli = CLITests()
        #expect(try cli.run(["random-checkpoint", "--preset", "tiny", "--seed", "11", "--out", s("clip")]).status == 0)
        let convert = try cli.run(["convert", "--hf", s("clip"), "--labels", s("labels.txt"), "--preset", "k400",
                                   "--ted-layers", "0,1", "--out", s("base.m2c")])
        #expect(convert.status == 0, "\(convert.stderr)")
        for label in ["moving left", "moving right"] {
            try FileManager.default.createDirectory(atPath: s("train/" + label), withIntermediateDirectories: true)
        }
        for i in 0..<pairs {
            try clip(s("train/moving right/r\(i).mp4"), y: (i * 7) % 24, x: i % 4, reverse: false)
            try clip(s("train/moving left/l\(i).mp4"), y: (i * 7) % 24, x: i % 4, reverse: true)
        }
    }

    @Test func badListsAndDirectoriesAreRefusedBeforeTraining() throws {
        let s = try Scratch()
        try Self.setUp(s, pairs: 1)
        try "".write(toFile: s("empty.txt"), atomically: true, encoding: .utf8)
        try "train/moving left/l0.mp4 moving left\ntrain/moving right/r0.mp4 walking backwards\n"
            .write(toFile: s("unknown.txt"), atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--train", s("missing.txt")], "missing.txt"),
            (["--train", s("empty.txt")], "empty.txt"),
            (["--train", s("unknown.txt")], "unknown.txt:2"),
            (["--train", s("train"), "--val", s("unknown.txt")], "unknown.txt:2: unknown label"),
        ]
        for (arguments, named) in cases {
            let r = try cli.run(["train", "--model", s("base.m2c"), "--out", s("out")] + arguments)
            #expect(r.status != 0, "\(arguments)")
            #expect(r.stderr.contains(named), "\(arguments): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: s("out")), "\(arguments): nothing written")
        }
        let unwritable = try cli.run(["train", "--model", s("base.m2c"), "--train", s("train"),
                                      "--out", s("labels.txt") + "/run"])
        #expect(unwritable.status != 0)
        #expect(unwritable.stderr.contains("labels.txt/run"), "\(unwritable.stderr)")
    }

    @Test func trainsOnVideosSkipsADamagedOneStopsOnSIGTERMAndResumes() throws {
        let s = try Scratch()
        try Self.setUp(s, pairs: 4)
        // a damaged clip in the list: skipped, named and counted; the run goes on
        try Data("not a video at all".utf8).write(to: URL(fileURLWithPath: s("train/moving left/broken.mp4")))
        var lines = ["train/moving right/r0.mp4 1", "train/moving left/l0.mp4 0"]
        lines += (1..<4).flatMap { ["train/moving right/r\($0).mp4 moving right", "train/moving left/l\($0).mp4 moving left"] }
        try lines.joined(separator: "\n").write(toFile: s("val.txt"), atomically: true, encoding: .utf8)
        let common = ["train", "--model", s("base.m2c"), "--train", s("train"), "--val", s("val.txt"),
                      "--out", s("run"), "--epochs", "3", "--batch", "4", "--lr", "1e-2", "--warmup-epochs", "1",
                      "--no-flip", "--threads", "2", "--workers", "2", "--json"]

        // SIGTERM after the first step: a checkpoint, exit 0, a "stopped" summary
        let (process, seen, stderr) = try Self.stopAfterFirstStep(common)
        let stopped = seen
        #expect(process.terminationStatus == 0, "\(stderr)")
        #expect(stopped.contains("\"outcome\":\"stopped\""), "\(stopped)")
        #expect(FileManager.default.fileExists(atPath: s("run/checkpoint.safetensors")))
        #expect(stopped.contains("broken.mp4") || stderr.contains("broken.mp4") || !stopped.contains("\"type\":\"epoch\""),
                "the damaged clip is named when it is reached")

        // the same command with --resume finishes the run
        let resumed = try cli.run(common + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let records = resumed.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(records.contains { $0["type"] as? String == "resumed" })
        #expect(records.contains { $0["type"] as? String == "warning" && ($0["message"] as? String ?? "").contains("broken.mp4") },
                "\(resumed.stdout)")
        let finish = try #require(records.last)
        #expect(finish["outcome"] as? String == "finished", "\(finish)")
        #expect((finish["skipped"] as? Int ?? 0) >= 1)
        for name in ["checkpoint.safetensors", "model.m2c", "best.m2c", "metrics.jsonl", "curves.svg"] {
            #expect(FileManager.default.fileExists(atPath: s("run/" + name)), "\(name)")
        }

        // the trained model in eval and classify
        let eval = try cli.run(["eval", "--model", s("run/best.m2c"), "--list", s("val.txt"), "--json",
                                "--confusion", s("confusion.csv"), "--threads", "2"])
        #expect(eval.status == 0, "\(eval.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        for key in ["top1", "top5", "zero_shot_top1", "per_class", "confusion", "mean_class_top1"] {
            #expect(report[key] != nil, "eval --json has \(key)")
        }
        #expect(report["clips"] as? Int == 8)
        let csv = try String(contentsOfFile: s("confusion.csv"), encoding: .utf8)
        #expect(csv.hasPrefix("true\\predicted,moving left,moving right\n"), "\(csv)")
        let classify = try cli.run(["classify", s("train/moving right/r0.mp4"), "--model", s("run/best.m2c"), "--json"])
        #expect(classify.status == 0, "\(classify.stderr)")
        #expect(classify.stdout.contains("\"head\":\"vc\"") || classify.stdout.contains("\"head\" : \"vc\""),
                "the trained VC head scores by default: \(classify.stdout)")
    }

    /// Runs m2clip with `arguments` and sends SIGTERM once the first step is reported (--json);
    /// the exited process, its stdout and its stderr.
    static func stopAfterFirstStep(_ arguments: [String]) throws -> (Process, String, String) {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var seen = Data()
        let reader = out.fileHandleForReading
        while !String(decoding: seen, as: UTF8.self).contains("\"type\":\"step\"") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
        }
        kill(process.processIdentifier, SIGTERM)
        seen.append(reader.readDataToEndOfFile())
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process, String(decoding: seen, as: UTF8.self), stderr)
    }

    /// A write that fails at the end of an epoch (a file-size limit below model.m2c's size, as a
    /// full disk would) is reported naming the file; the epoch's training is not lost: the
    /// checkpoint (smaller than the model) then holds the epoch's last step, no temporary file is
    /// left, and a resume with room redoes only the epoch end.
    @Test func aWriteErrorAtTheEpochEndKeepsTheEpochInTheCheckpoint() throws {
        let s = try Scratch()
        try Self.setUp(s, pairs: 2)
        let common = ["train", "--model", s("base.m2c"), "--train", s("train"), "--out", s("run"), "--epochs", "2",
                      "--batch", "2", "--threads", "2", "--workers", "1", "--json"]
        let (first, _, firstErr) = try Self.stopAfterFirstStep(common)
        #expect(first.terminationStatus == 0, "\(firstErr)")
        let checkpoint = try #require(FileManager.default.contents(atPath: s("run/checkpoint.safetensors")))
        let modelSize = try #require(try FileManager.default.attributesOfItem(atPath: s("base.m2c"))[.size] as? Int)
        let limit = checkpoint.count + 64 << 10
        #expect(limit < modelSize, "the limit lets the checkpoint through but not model.m2c")

        let limited = try cli.run(common + ["--resume"], under: ["prlimit", "--fsize=\(limit)"])
        #expect(limited.status != 0)
        #expect(limited.stderr.contains("model.m2c") && limited.stderr.contains("cannot"), "\(limited.stderr)")
        #expect(limited.stderr.contains("kept in \(s("run/checkpoint.safetensors"))"), "\(limited.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: s("run")).filter { $0.contains(".tmp-") }
        #expect(left.isEmpty, "no temporary file left: \(left)")

        let resumed = try cli.run(common + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        // At the end of the epoch that failed (clip 4 of 4): its steps are not trained again.
        #expect(resumed.stdout.contains(", clip 4 of it, after "), "\(resumed.stdout)")
        #expect(resumed.stdout.contains("\"outcome\":\"finished\""), "\(resumed.stdout)")
        #expect(try cli.run(["inspect", s("run/model.m2c")]).status == 0)
    }

    /// --resume where the run never wrote a checkpoint says so instead of a bare "cannot open".
    @Test func resumeWithoutACheckpointSaysSo() throws {
        let s = try Scratch()
        try Self.setUp(s, pairs: 1)
        try FileManager.default.createDirectory(atPath: s("run"), withIntermediateDirectories: true)
        let r = try cli.run(["train", "--model", s("base.m2c"), "--train", s("train"), "--out", s("run"), "--resume"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("no checkpoint in \(s("run"))") && r.stderr.contains("without --resume"), "\(r.stderr)")
    }

    @Test func newLabelsTrainAResizedHeadAndResumeChecksThem() throws {
        let s = try Scratch()
        try Self.setUp(s, pairs: 2)
        try "moving right\nstanding still\nmoving left\n".write(toFile: s("new.txt"), atomically: true, encoding: .utf8)
        try "moving right\nmoving up\nmoving left\n".write(toFile: s("other.txt"), atomically: true, encoding: .utf8)
        let common = ["train", "--model", s("base.m2c"), "--train", s("train"), "--out", s("run"), "--epochs", "1",
                      "--batch", "4", "--threads", "2", "--workers", "1", "--json"]
        let trained = try cli.run(common + ["--labels", s("new.txt")])
        #expect(trained.status == 0, "\(trained.stderr)")
        #expect(trained.stderr.contains("3 labels, 2 the model had, 1 new"), "\(trained.stderr)")
        #expect(FileManager.default.fileExists(atPath: s("run/base.m2c")))
        let inspect = try cli.run(["inspect", s("run/model.m2c")])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("VC head: 3 classes") && !inspect.stdout.contains("untrained"), "\(inspect.stdout)")
        #expect(inspect.stdout.contains("standing still"), "\(inspect.stdout)")

        let otherLabels = try cli.run(common + ["--labels", s("other.txt"), "--resume"])
        #expect(otherLabels.status != 0)
        #expect(otherLabels.stderr.contains("base.m2c was made for other labels"), "\(otherLabels.stderr)")
        let noLabels = try cli.run(common + ["--resume"])
        #expect(noLabels.status != 0)
        #expect(noLabels.stderr.contains("resume with the same --labels"), "\(noLabels.stderr)")
        // a list naming a label only the new set has is read against the new set
        try "train/moving left/l0.mp4 standing still\n".write(toFile: s("still.txt"), atomically: true, encoding: .utf8)
        let refused = try cli.run(["train", "--model", s("base.m2c"), "--train", s("still.txt"), "--out", s("run2")])
        #expect(refused.status != 0 && refused.stderr.contains("still.txt:1"), "\(refused.stderr)")
    }
}
