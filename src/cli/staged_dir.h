// An output folder built under a temporary name next to its final place and renamed into place on
// commit(), so that a failure (or Ctrl-C) never leaves a half-written model where one is expected.
#pragma once

#include <string>

namespace nibble {

class staged_dir {
  public:
    // Fails if `final_path` already exists.
    explicit staged_dir(const std::string& final_path);
    ~staged_dir();  // removes the temporary folder unless committed
    const std::string& path() const { return tmp_; }
    void commit();

  private:
    std::string final_, tmp_;
    bool committed_ = false;
};

// Writes a whole text file; fails naming the path.
void write_text_file(const std::string& path, const std::string& text);

// Copies the tokenizer / generation / chat-template files of `src_dir` into `dst_dir` (whichever exist).
void copy_model_side_files(const std::string& src_dir, const std::string& dst_dir);

}  // namespace nibble
