import Foundation
import Testing
@testable import Training

/// Every list form a user may bring, and each refusal naming file, line and label.
@Suite struct ClipListTests {
    static let labels = ["riding a bike", "playing guitar", "juggling balls", "Riding a Horse"]

    @Test func mmactionLinesWithIndicesNamesAndSpaces() throws {
        let dir = try DataScratch()
        let list = try dir.write("""
            # K400-style list
            videos/a.mp4 0

            videos/with space/b c.mp4   2
            /abs/d.mp4\tplaying guitar
            e f.mp4 riding a horse
            g.mp4 JUGGLING BALLS
            h.mp4 riding_a_bike
            """, to: "lists/train.txt")
        let entries = try ClipList.read(list, labels: Self.labels)
        let base = dir.path("lists")
        #expect(entries.map(\.path) == ["\(base)/videos/a.mp4", "\(base)/videos/with space/b c.mp4", "/abs/d.mp4",
                                        "\(base)/e f.mp4", "\(base)/g.mp4", "\(base)/h.mp4"])
        #expect(entries.map(\.label) == [0, 2, 1, 3, 2, 0])
        #expect(entries.map(\.source) == ["\(list):2", "\(list):4", "\(list):5", "\(list):6", "\(list):7", "\(list):8"])
    }

    /// A label that ends with another label's name (K400's "arm wrestling" and "wrestling"):
    /// the split whose path is a file wins, else the one whose path is a video file name.
    @Test func nestedLabelNamesPickTheSplitThatIsAVideo() throws {
        let dir = try DataScratch()
        let labels = ["wrestling", "arm wrestling", "arm"]
        _ = try dir.write("", to: "clips/x.mp4")
        let list = try dir.write("""
            clips/x.mp4 arm wrestling
            y.mp4 arm wrestling
            z.mp4 wrestling
            """, to: "list.txt")
        let entries = try ClipList.read(list, labels: labels)
        #expect(entries.map(\.path) == [dir.path("clips/x.mp4"), dir.path("y.mp4"), dir.path("z.mp4")])
        #expect(entries.map(\.label) == [1, 1, 0])
    }

    @Test func csvWithHeaderAndQuotes() throws {
        let dir = try DataScratch()
        let list = try dir.write("""
            path,label
            a.mp4,1
            "b, the second.mp4",riding a bike
            "say ""hi"".mp4", "juggling balls"
            sub/c.mp4 , 3
            """, to: "val.csv")
        let entries = try ClipList.read(list, labels: Self.labels)
        #expect(entries.map(\.path) == [dir.path("a.mp4"), dir.path("b, the second.mp4"), dir.path("say \"hi\".mp4"),
                                        dir.path("sub/c.mp4")])
        #expect(entries.map(\.label) == [1, 0, 2, 3])
        #expect(entries[0].source == "\(list):2")
        // A file without a header: the first line is a clip.
        let bare = try dir.write("x.mp4,playing guitar\n", to: "bare.csv")
        #expect(try ClipList.read(bare, labels: Self.labels).map(\.label) == [1])
    }

    @Test func classFolders() throws {
        let dir = try DataScratch()
        try dir.write("", to: "train/riding_a_bike/1.mp4")
        try dir.write("", to: "train/riding_a_bike/0.avi")
        try dir.write("", to: "train/riding_a_bike/notes.txt")
        try dir.write("", to: "train/playing guitar/x.webm")
        try dir.write("", to: "train/readme.md")
        let entries = try ClipList.read(dir.path("train"), labels: Self.labels)
        #expect(entries.map(\.path) == [dir.path("train/playing guitar/x.webm"), dir.path("train/riding_a_bike/0.avi"),
                                        dir.path("train/riding_a_bike/1.mp4")])
        #expect(entries.map(\.label) == [1, 0, 0])

        try dir.write("", to: "train/skateboarding/y.mp4")
        let message = thrownMessage { _ = try ClipList.read(dir.path("train"), labels: Self.labels) }
        #expect(message?.contains("folder 'skateboarding' names no class") == true, "\(message ?? "no error")")
        #expect(message?.contains(dir.path("train/skateboarding")) == true)
    }

    @Test func refusalsNameFileLineAndLabel() throws {
        let dir = try DataScratch()
        let unknown = try dir.write("a.mp4 0\n\nb.mp4 ridng a bke\n", to: "unknown.txt")
        let message = thrownMessage { _ = try ClipList.read(unknown, labels: Self.labels) } ?? ""
        print("[data] \(message)")
        #expect(message.contains("\(unknown):3"), "\(message)")
        #expect(message.contains("unknown label 'bke'"), "\(message)")
        #expect(message.contains("'riding a bike'"), "lists known labels: \(message)")
        #expect(!message.contains("\n"))

        let range = try dir.write("a.mp4 4\n", to: "range.txt")
        let rangeMessage = thrownMessage { _ = try ClipList.read(range, labels: Self.labels) } ?? ""
        #expect(rangeMessage.contains("\(range):1") && rangeMessage.contains("label index 4 is outside"), "\(rangeMessage)")

        let oneWord = try dir.write("# header\nlonely.mp4\n", to: "oneword.txt")
        let parseMessage = thrownMessage { _ = try ClipList.read(oneWord, labels: Self.labels) } ?? ""
        #expect(parseMessage.contains("\(oneWord):2") && parseMessage.contains("expected 'path label'"), "\(parseMessage)")

        let csvFields = try dir.write("a.mp4,1\nb.mp4,1,extra\n", to: "fields.csv")
        let fieldMessage = thrownMessage { _ = try ClipList.read(csvFields, labels: Self.labels) } ?? ""
        #expect(fieldMessage.contains("\(csvFields):2") && fieldMessage.contains("found 3"), "\(fieldMessage)")

        let quote = try dir.write("\"a.mp4,1\n", to: "quote.csv")
        let quoteMessage = thrownMessage { _ = try ClipList.read(quote, labels: Self.labels) } ?? ""
        #expect(quoteMessage.contains("\(quote):1") && quoteMessage.contains("not closed"), "\(quoteMessage)")

        let csvLabel = try dir.write("path,label\na.mp4,surfing\n", to: "label.csv")
        let csvLabelMessage = thrownMessage { _ = try ClipList.read(csvLabel, labels: Self.labels) } ?? ""
        #expect(csvLabelMessage.contains("\(csvLabel):2") && csvLabelMessage.contains("'surfing'"), "\(csvLabelMessage)")

        let empty = try dir.write("# nothing\n\n", to: "empty.txt")
        let emptyMessage = thrownMessage { _ = try ClipList.read(empty, labels: Self.labels) } ?? ""
        #expect(emptyMessage.contains(empty) && emptyMessage.contains("no clips"), "\(emptyMessage)")

        let missing = dir.path("absent.txt")
        let missingMessage = thrownMessage { _ = try ClipList.read(missing, labels: Self.labels) } ?? ""
        #expect(missingMessage.contains(missing) && missingMessage.contains("no such file"), "\(missingMessage)")
    }

    @Test func missingVideosAreListedNotRefused() throws {
        let dir = try DataScratch()
        try dir.write("", to: "here.mp4")
        let list = try dir.write("here.mp4 0\ngone.mp4 1\n", to: "train.txt")
        let entries = try ClipList.read(list, labels: Self.labels)
        #expect(entries.count == 2)
        #expect(ClipList.missingFiles(entries).map(\.source) == ["\(list):2"])
    }
}
